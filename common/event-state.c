/* SPDX-License-Identifier: MIT */
/*
 * event-state — see event-state.h. The tables below are the state machine:
 * a new status is a new enum value, a name here and a row in the schema's
 * CHECK constraint (a migration); a new operator verb is a row in ops[].
 */
#include "event-state.h"
#include "util.h"

#include <stddef.h>
#include <stdint.h>
#include <sys/random.h>
#include <unistd.h>
#include <string.h>

#define BIT(s) (1U << (s))

const char *const event_status_names[_EVENT_STATUS_MAX] = {
        [EVENT_STATUS_RECEIVED] = "received",
        [EVENT_STATUS_PROCESSING] = "processing",
        [EVENT_STATUS_FAILED] = "failed",
        [EVENT_STATUS_DEAD] = "dead",
        [EVENT_STATUS_IGNORED] = "ignored",
        [EVENT_STATUS_HANDLED] = "handled",
};

static const char *const outcome_names[_EVENT_OUTCOME_MAX] = {
        [EVENT_OUTCOME_SUCCESS] = "success",
        [EVENT_OUTCOME_TEMPFAIL] = "tempfail",
        [EVENT_OUTCOME_TIMEOUT] = "timeout",
        [EVENT_OUTCOME_PERMANENT] = "permanent",
        [EVENT_OUTCOME_INTERRUPTED] = "interrupted",
};

/* What each operator verb accepts and does (contract §7). */
static const struct {
        unsigned changes;   /* statuses moved to `target` */
        unsigned unchanged; /* statuses that already are what the verb asks */
        event_status target;
} ops[_EVENT_OP_MAX] = {
        [EVENT_OP_REQUEUE] = {
                .changes = BIT(EVENT_STATUS_FAILED) | BIT(EVENT_STATUS_DEAD) |
                           BIT(EVENT_STATUS_IGNORED),
                .target = EVENT_STATUS_RECEIVED,
        },
        [EVENT_OP_REPLAY] = {
                .changes = BIT(EVENT_STATUS_HANDLED),
                .target = EVENT_STATUS_RECEIVED,
        },
        [EVENT_OP_IGNORE] = {
                .changes = BIT(EVENT_STATUS_RECEIVED) | BIT(EVENT_STATUS_FAILED) |
                           BIT(EVENT_STATUS_DEAD),
                .unchanged = BIT(EVENT_STATUS_IGNORED),
                .target = EVENT_STATUS_IGNORED,
        },
        /* Not while a handler runs it: its result would overwrite the replay. */
        [EVENT_OP_REPLAY_DELIVERY] = {
                .changes = (BIT(_EVENT_STATUS_MAX) - 1) & ~BIT(EVENT_STATUS_PROCESSING),
                .target = EVENT_STATUS_RECEIVED,
        },
};

const char *event_status_to_string(event_status s)
{
        if ((unsigned)s >= _EVENT_STATUS_MAX)
                return NULL;
        return event_status_names[s];
}

event_status event_status_from_string(const char *s)
{
        for (size_t i = 0; s && i < _EVENT_STATUS_MAX; i++)
                if (strcmp(s, event_status_names[i]) == 0)
                        return (event_status)i;
        return _EVENT_STATUS_INVALID;
}

bool event_status_is_final(event_status s)
{
        return s == EVENT_STATUS_HANDLED || s == EVENT_STATUS_IGNORED || s == EVENT_STATUS_DEAD;
}

const char *event_outcome_to_string(event_outcome o)
{
        if ((unsigned)o >= _EVENT_OUTCOME_MAX)
                return NULL;
        return outcome_names[o];
}

event_status event_status_after(
        event_outcome o, uint64_t attempt, uint64_t max_attempts, const char **ret_reason)
{
        *ret_reason = NULL;
        if (o == EVENT_OUTCOME_SUCCESS)
                return EVENT_STATUS_HANDLED;
        if (o == EVENT_OUTCOME_PERMANENT) {
                *ret_reason = "permanent_failure";
                return EVENT_STATUS_DEAD;
        }
        if (attempt >= max_attempts) {
                *ret_reason = "max_attempts";
                return EVENT_STATUS_DEAD;
        }
        return EVENT_STATUS_FAILED;
}

uint64_t events_backoff_ms(uint64_t base, uint64_t cap, uint64_t attempt, uint64_t rnd)
{
        uint64_t ceiling = base;

        if (cap < base)
                cap = base;
        if (attempt < 1)
                attempt = 1;
        /* base·2^(attempt-1), saturating at cap without overflowing */
        for (uint64_t i = 1; i < attempt && ceiling < cap; i++)
                ceiling = ceiling > cap / 2 ? cap : ceiling * 2;
        if (ceiling > cap)
                ceiling = cap;
        if (ceiling == base)
                return base;
        return base + rnd % (ceiling - base + 1);
}

event_op_verdict event_op_check(event_op op, event_status from)
{
        if ((unsigned)op >= _EVENT_OP_MAX || (unsigned)from >= _EVENT_STATUS_MAX)
                return EVENT_OP_REFUSED;
        if (ops[op].unchanged & BIT(from))
                return EVENT_OP_UNCHANGED;
        return ops[op].changes & BIT(from) ? EVENT_OP_CHANGES : EVENT_OP_REFUSED;
}

event_status event_op_target(event_op op)
{
        return (unsigned)op < _EVENT_OP_MAX ? ops[op].target : _EVENT_STATUS_INVALID;
}

/* xorshift64*, seeded once per thread from getrandom(): jitter needs spread,
 * not secrecy. */
uint64_t events_jitter_random(void)
{
        static __thread uint64_t state;

        if (state == 0) {
                if (getrandom(&state, sizeof(state), GRND_NONBLOCK) != sizeof(state))
                        state = (uint64_t)mono_us() ^ ((uint64_t)getpid() << 32);
                if (state == 0)
                        state = 0x9e3779b97f4a7c15ULL;
        }
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        return state * 0x2545f4914f6cdd1dULL;
}
