/* base/: a bounded free list of recycled blocks, linked through each block's first bytes
 * (a block must hold a pointer). The owner keeps the head and the count and is the only
 * thread touching them: no locking. Used for the connections' input and output blocks; the
 * RH_FREELIST_* macros below serve structs with a link field. */
#ifndef RH_BASE_FREELIST_H
#define RH_BASE_FREELIST_H

#include <stdbool.h>

/* A recycled block, or NULL when none is kept. */
static inline char *rh_freelist_pop(char **head, unsigned *n)
{
    char *b = *head;
    if (b) {
        *head = *(char **)b;
        (*n)--;
    }
    return b;
}

/* Keeps b for reuse; false when max blocks are kept already (the caller frees b), so the
 * memory kept after a burst stays bounded. */
static inline bool rh_freelist_push(char **head, unsigned *n, unsigned max, char *b)
{
    if (*n >= max)
        return false;
    *(char **)b = *head;
    *head = b;
    (*n)++;
    return true;
}

/* The variant for structs with a link field (requests, offloads, static transfers): an
 * unbounded list, since each struct is counted elsewhere (one per live request or transfer),
 * linked through `link`. Macros so one definition serves every struct type. */

/* The head struct, unlinked, or NULL when the list is empty. */
#define RH_FREELIST_POP(head, link)                                                     \
    ({                                                                                  \
        __typeof__(head) rh_fl_x_ = (head);                                             \
        if (rh_fl_x_)                                                                   \
            (head) = rh_fl_x_->link;                                                    \
        rh_fl_x_;                                                                       \
    })

/* Keeps x for reuse. */
#define RH_FREELIST_PUSH(head, x, link)                                                 \
    do {                                                                                \
        (x)->link = (head);                                                             \
        (head) = (x);                                                                   \
    } while (0)

#endif
