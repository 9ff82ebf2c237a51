/* cases.h: the exec_cases operation (cases.c): one program compiled once in a session opd owns,
 * each test case run in a fresh copy of the compiled VM, the answers in order. */
#pragma once

#include <jansson.h>

struct client;

void op_exec_cases(struct client *c, json_t *id, json_t *req);
