/* demand.c: the demand estimate of a pool (a decaying count of arrivals), the target it asks
 * for and the retry hint given to refused requests; no clock and no state of its own. */
#include "demand.h"

#include <math.h>

/* exp(-ln 2 * age / half-life): the weight left of one arrival after age_us */
static double decay(uint64_t age_us)
{
        return exp2(-(double)age_us / (double)POOL_DEMAND_HALF_LIFE_US);
}

void pool_demand_arrival(struct pool_demand *d, uint64_t now_us)
{
        if (d->t_last_us && now_us < d->t_last_us)
                now_us = d->t_last_us;
        d->weight = (d->t_last_us ? d->weight * decay(now_us - d->t_last_us) : 0.0) + 1.0;
        d->t_last_us = now_us;
}

double pool_demand_rate(const struct pool_demand *d, uint64_t now_us)
{
        /* A steady rate r keeps the weight at r * tau, tau = half-life / ln 2 (the weights'
         * mean age): the weight over tau is the rate. */
        const double tau_s = (double)POOL_DEMAND_HALF_LIFE_US / 1e6 / M_LN2;

        if (!d->t_last_us)
                return 0.0;
        if (now_us < d->t_last_us)
                now_us = d->t_last_us;
        return d->weight * decay(now_us - d->t_last_us) / tau_s;
}

uint32_t pool_demand_target(double rate, double refill_ms, unsigned waiting, uint32_t min,
                            uint32_t max)
{
        /* Less than a tenth of a clone's worth of arrivals per refill asks for none. */
        double expected = rate * refill_ms / 1000.0 - 0.1;
        double want = (expected > 0 ? ceil(expected) : 0.0) + (double)waiting;

        if (want < (double)min)
                want = min;
        if (want > (double)max)
                want = max;
        return (uint32_t)want;
}

uint32_t pool_demand_retry_after_ms(double refill_ms, unsigned waiting, unsigned max_restores)
{
        double rounds = ceil((double)(waiting + 1) / (double)(max_restores ? max_restores : 1));
        double ms = rounds * refill_ms;

        if (ms < 1.0)
                return 1;
        return ms > 600000.0 ? 600000 : (uint32_t)ms;
}
