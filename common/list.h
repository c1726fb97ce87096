/* SPDX-License-Identifier: MIT */
#pragma once

/*
 * list — the one intrusive doubly linked list (systemd's LIST_* macros, cut
 * down to what knock uses).
 *
 * An object that goes on a list carries its own links: LIST_FIELDS(type)
 * in its struct declares `prev` and `next`. A list is a pointer to its
 * first object, NULL when empty, and is walked with ->next.
 *
 * Promises:
 *  - LIST_PREPEND(head, item) puts item first; LIST_REMOVE(head, item)
 *    takes item off the list whose head is `head` and clears its links.
 *    Both are O(1), never allocate and cannot fail;
 *  - an object is on at most one list at a time through these fields (a
 *    removed object has prev == next == NULL);
 *  - each argument is evaluated once.
 *
 * No allocation, no locking (the list's owner serialises), no logging.
 */

#define LIST_FIELDS(type) type *prev, *next

#define LIST_PREPEND(head, item)                                                                   \
        do {                                                                                       \
                __typeof__(head) *h_ = &(head), i_ = (item);                                       \
                i_->prev = NULL;                                                                   \
                i_->next = *h_;                                                                    \
                if (*h_)                                                                           \
                        (*h_)->prev = i_;                                                          \
                *h_ = i_;                                                                          \
        } while (0)

#define LIST_REMOVE(head, item)                                                                    \
        do {                                                                                       \
                __typeof__(head) *h_ = &(head), i_ = (item);                                       \
                if (i_->prev)                                                                      \
                        i_->prev->next = i_->next;                                                 \
                else                                                                               \
                        *h_ = i_->next;                                                            \
                if (i_->next)                                                                      \
                        i_->next->prev = i_->prev;                                                 \
                i_->prev = i_->next = NULL;                                                        \
        } while (0)
