/* demand.h: a pool's demand estimate (arrivals per second, decaying with time) and the target
 * it asks for. Pure functions of their arguments: the caller passes the clock. */
#pragma once

#include <stdint.h>

/* The half-life of an arrival's weight in the rate, in microseconds. */
#define POOL_DEMAND_HALF_LIFE_US 5000000ull

/* An exponentially decaying count of arrivals: each one weighs 1 when it arrives and half that
 * POOL_DEMAND_HALF_LIFE_US later. Zero-initialised: no arrival seen. */
struct pool_demand {
        double weight;      /* the decayed count at t_last_us */
        uint64_t t_last_us; /* the last arrival, 0: none */
};

/* Arrival of one request at now_us (monotonic microseconds; a time before the last arrival
 * counts as the last arrival's). */
void pool_demand_arrival(struct pool_demand *d, uint64_t now_us);
/* Arrivals per second at now_us: the decayed count over the mean age of its weight. */
double pool_demand_rate(const struct pool_demand *d, uint64_t now_us);
/* The clones a pool should hold (paused and restoring): enough to cover the arrivals expected
 * while one clone is being made (rate * refill_ms, rounded up; less than a tenth asks for
 * none), plus the requests already waiting that may take one (not those their uid's cap holds
 * back), within [min, max]. */
uint32_t pool_demand_target(double rate, double refill_ms, unsigned waiting, uint32_t min,
                            uint32_t max);
/* A hint for a refused request: when a clone is likely free, in ms (at least 1): the clones
 * ahead of it (waiting + 1) made max_restores at a time, each taking refill_ms. */
uint32_t pool_demand_retry_after_ms(double refill_ms, unsigned waiting, unsigned max_restores);
