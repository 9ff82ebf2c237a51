/* vmm-output.h: a VMM's stdout and stderr: a pipe opd drains as it comes, keeping only the last
 * VMM_OUTPUT_TAIL bytes, for the log line of a failure. Nothing a VMM prints lands on a file
 * system, so no VMM, nor a guest whose console is its VMM's stdout (Firecracker's), can fill
 * one. */
#pragma once

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

/* How much of a VMM's output is kept. */
#define VMM_OUTPUT_TAIL 1024

struct vmm_output;

/* A pipe and its reader on base. *ret_wr is the write end, for the VMM's stdout and stderr: the
 * caller closes it once the VMM has it. */
int vmm_output_new(struct event_base *base, int *ret_wr, struct vmm_output **ret);
/* Whatever the pipe still holds is read first (without blocking); then the last bytes of all
 * the VMM wrote, *ret_len of them (at most VMM_OUTPUT_TAIL), and in *ret_total (may be NULL)
 * how many it wrote in all. */
const char *vmm_output_tail(struct vmm_output *o, size_t *ret_len, uint64_t *ret_total);
/* Accepts NULL; returns NULL. */
struct vmm_output *vmm_output_free(struct vmm_output *o);
