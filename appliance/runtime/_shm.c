/*
 * _shm: the few operations on shared memory that need real atomics.
 *
 * Python has no release store or acquire load; struct.pack_into on a
 * memoryview is a memcpy that happens to be atomic for aligned 8-byte words on
 * x86-64, but nothing promises it and nothing stops the compiler or CPU from
 * reordering the payload write after the index store. Everything here is
 * explicit C11 atomics on aligned 64-bit (or 32-bit futex) words inside a
 * buffer that the Python side mapped (mmap of a shared-memory segment).
 *
 * Types:
 *   Ring       one side (producer, consumer or observer) of an SPSC ring of
 *              fixed-size slots; see RING_* for the layout.
 *   Doorbell   a word a consumer sleeps on and producers ring: on the futex
 *              (ASLEEP), or in poll() on its wake socket (ASLEEP_POLL: the
 *              producer sends one byte to the consumer's abstract unix
 *              datagram address, so the consumer can wait on sockets too).
 *   Counter    a single-writer 64-bit value (counters table slot).
 *   Heartbeat  a process record: duty-cycle count, last beat, longest cycle.
 *   AtomicView acquire loads / release stores at any aligned offset (readers,
 *              headers, tests).
 *
 * Every object keeps a Py_buffer export of the mapping, so the mmap cannot be
 * closed underneath it (mmap.close() raises BufferError while we hold it).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* ---- ring layout: the one descriptor (exported to Python as constants) ---- */
#define CACHE_LINE 128                 /* two 64-byte lines: defeats adjacent-line prefetch */
#define RING_MAGIC 0x474e4952434f5053ULL /* "SPOCRING" little-endian */
/* descriptor line, written once by the creator */
#define RING_MAGIC_OFFSET 0
#define RING_SLOT_SIZE_OFFSET 8
#define RING_CAPACITY_OFFSET 16
/* producer line: written only by the producer */
#define RING_TAIL_OFFSET (1 * CACHE_LINE + 0)
#define RING_FULL_EVENTS_OFFSET (1 * CACHE_LINE + 8)
#define RING_PRODUCER_MAX_DEPTH_OFFSET (1 * CACHE_LINE + 16)
#define RING_PRODUCER_PID_OFFSET (1 * CACHE_LINE + 24)
/* consumer line: written only by the consumer */
#define RING_HEAD_OFFSET (2 * CACHE_LINE + 0)
#define RING_CONSUMER_MAX_DEPTH_OFFSET (2 * CACHE_LINE + 8)
#define RING_CONSUMER_PID_OFFSET (2 * CACHE_LINE + 16)
#define RING_HEADER_SIZE (3 * CACHE_LINE)

/* ---- process record (heartbeats table), one per process, one writer ---- */
#define PROC_PID_OFFSET 0
#define PROC_STATE_OFFSET 8
#define PROC_BEATS_OFFSET 16
#define PROC_LAST_BEAT_MONO_NS_OFFSET 24
#define PROC_MAX_DUTY_NS_OFFSET 32
#define PROC_IDLE_STRATEGY_OFFSET 40
#define PROC_CPU_OFFSET 48
#define PROC_STARTED_NS_OFFSET 56
#define PROC_WORK_OFFSET 64
#define PROC_LAST_DUTY_NS_OFFSET 72
#define PROC_RECORD_SIZE CACHE_LINE

typedef _Atomic uint64_t au64;
typedef _Atomic uint32_t au32;

static inline uint64_t mono_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* Borrow a buffer and check that [offset, offset+size) lies inside it and the
 * start is aligned to `align`. On failure sets a Python exception. */
static int
map_region(PyObject *obj, Py_buffer *view, Py_ssize_t offset, Py_ssize_t size,
           Py_ssize_t align, int writable, char **out)
{
    if (PyObject_GetBuffer(obj, view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return -1;
    if (offset < 0 || size < 0 || offset > view->len || size > view->len - offset) {
        PyErr_Format(PyExc_ValueError, "region [%zd, %zd) lies outside the %zd-byte buffer",
                     offset, offset + size, view->len);
        PyBuffer_Release(view);
        return -1;
    }
    char *p = (char *)view->buf + offset;
    if (align > 1 && ((uintptr_t)p % (uintptr_t)align) != 0) {
        PyErr_Format(PyExc_ValueError, "offset %zd is not %zd-byte aligned in memory", offset, align);
        PyBuffer_Release(view);
        return -1;
    }
    *out = p;
    return 0;
}

/* Every type below starts with this: the export of the caller's buffer that
 * keeps the mapping alive for as long as the handle lives. */
#define BUFFER_HANDLE_HEAD \
    PyObject_HEAD        \
    Py_buffer view;      \
    int has_view;

typedef struct {
    BUFFER_HANDLE_HEAD
} BufferHandle;

static void
handle_dealloc(PyObject *self)
{
    BufferHandle *h = (BufferHandle *)self;
    if (h->has_view)
        PyBuffer_Release(&h->view);
    Py_TYPE(self)->tp_free(self);
}

/* The common __init__(buffer, offset) of the single-word handles: map `size`
 * bytes at `offset`, aligned to `align`, writable. */
static int
handle_init_at(PyObject *self, PyObject *args, PyObject *kwds, Py_ssize_t size, Py_ssize_t align, char **out)
{
    static char *kwlist[] = {"buffer", "offset", NULL};
    BufferHandle *h = (BufferHandle *)self;
    PyObject *buffer;
    Py_ssize_t offset;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On", kwlist, &buffer, &offset))
        return -1;
    if (h->has_view) {
        PyErr_Format(PyExc_RuntimeError, "%s already initialised", Py_TYPE(self)->tp_name);
        return -1;
    }
    if (map_region(buffer, &h->view, offset, size, align, 1, out) < 0)
        return -1;
    h->has_view = 1;
    return 0;
}

/* ====================================================================== */
/* Doorbell word helpers (shared by Ring and Doorbell)                     */
/* ====================================================================== */

#define DOORBELL_AWAKE 0u
#define DOORBELL_ASLEEP 1u        /* the consumer waits on the futex word */
#define DOORBELL_ASLEEP_POLL 2u   /* the consumer waits in poll() on its wake socket */

/* A producer's way to a consumer's wake socket (only used for ASLEEP_POLL). */
typedef struct {
    int open;                     /* fd is ours (zero-initialised objects have none) */
    int fd;                       /* unbound datagram socket */
    socklen_t addrlen;
    struct sockaddr_un addr;
    uint64_t sends;               /* process-local: wake datagrams sent */
    uint64_t send_errors;         /* process-local: refused (nobody bound) or queue full */
} WakeTarget;

/* Parse an optional bytes address into a WakeTarget (fd -1 when None). */
static int
wake_target_init(WakeTarget *t, PyObject *address)
{
    t->sends = t->send_errors = 0;
    if (t->open) {
        PyErr_SetString(PyExc_RuntimeError, "wake target already open");
        return -1;
    }
    if (address == NULL || address == Py_None)
        return 0;
    char *data;
    Py_ssize_t len;
    if (PyBytes_AsStringAndSize(address, &data, &len) < 0)
        return -1;
    if (len < 1 || len > (Py_ssize_t)sizeof(t->addr.sun_path)) {
        PyErr_Format(PyExc_ValueError, "wake address of %zd bytes (1 to %zu)", len, sizeof(t->addr.sun_path));
        return -1;
    }
    memset(&t->addr, 0, sizeof(t->addr));
    t->addr.sun_family = AF_UNIX;
    memcpy(t->addr.sun_path, data, (size_t)len);
    t->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + (size_t)len);
    t->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (t->fd < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    t->open = 1;
    return 0;
}

static void
wake_target_close(WakeTarget *t)
{
    if (t->open) {
        close(t->fd);
        t->open = 0;
    }
}

static inline void doorbell_ring(au32 *word, WakeTarget *t) {
    /* Pairs with the fence in Doorbell.announce(): either the consumer sees
     * our tail store when it re-checks, or we see its announcement here. The
     * exchange makes exactly one producer the waker of each announcement. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(word, memory_order_relaxed) == DOORBELL_AWAKE)
        return;
    uint32_t was = atomic_exchange_explicit(word, DOORBELL_AWAKE, memory_order_acq_rel);
    if (was == DOORBELL_ASLEEP) {
        syscall(SYS_futex, (uint32_t *)word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
    } else if (was == DOORBELL_ASLEEP_POLL) {
        /* A producer without the address cannot wake a poll()ing consumer: it
         * wakes at its timeout (every producer the layout builds has it). */
        if (t != NULL && t->open) {
            static const char byte = 1;
            if (sendto(t->fd, &byte, 1, MSG_DONTWAIT | MSG_NOSIGNAL, (struct sockaddr *)&t->addr, t->addrlen) == 1)
                t->sends++;
            else
                t->send_errors++;   /* ECONNREFUSED: the consumer is gone; EAGAIN: already has wakes queued */
        }
    }
}

/* ====================================================================== */
/* Ring                                                                    */
/* ====================================================================== */

enum { ROLE_PRODUCER = 'p', ROLE_CONSUMER = 'c', ROLE_OBSERVER = 'o' };

typedef struct {
    BUFFER_HANDLE_HEAD
    int role;
    char *base;          /* ring header */
    char *slots;         /* first slot */
    au64 *tail;
    au64 *head;
    au32 *doorbell;      /* consumer's doorbell, or NULL */
    WakeTarget wake;     /* consumer's wake socket (producer side), fd -1 if none */
    Py_ssize_t offset;   /* of the ring header inside the buffer */
    uint64_t slot_size;
    uint64_t capacity;
    uint64_t mask;
    /* producer-local */
    uint64_t local_tail;
    uint64_t cached_head;
    int claimed;
    int in_full_episode;
    /* consumer-local */
    uint64_t local_head;
    uint64_t cached_tail;
    int peeked;
} Ring;

static void Ring_dealloc(PyObject *self);

static inline char *slot_at(Ring *r, uint64_t index) {
    return r->slots + (index & r->mask) * r->slot_size;
}

static inline void relaxed_max(char *base, Py_ssize_t off, uint64_t value) {
    au64 *p = (au64 *)(base + off);
    if (value > atomic_load_explicit(p, memory_order_relaxed))
        atomic_store_explicit(p, value, memory_order_relaxed);
}

static inline void relaxed_inc(char *base, Py_ssize_t off) {
    au64 *p = (au64 *)(base + off);
    atomic_store_explicit(p, atomic_load_explicit(p, memory_order_relaxed) + 1, memory_order_relaxed);
}

static int
Ring_init(Ring *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"buffer", "offset", "slot_size", "capacity", "role", "doorbell_offset",
                             "wake_address", NULL};
    PyObject *buffer, *wake_address = NULL;
    Py_ssize_t offset, slot_size, capacity, doorbell_offset = -1;
    int role;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OnnnC|nO", kwlist, &buffer, &offset, &slot_size,
                                     &capacity, &role, &doorbell_offset, &wake_address))
        return -1;
    if (self->has_view) {
        PyErr_SetString(PyExc_RuntimeError, "Ring already initialised");
        return -1;
    }
    if (role != ROLE_PRODUCER && role != ROLE_CONSUMER && role != ROLE_OBSERVER) {
        PyErr_SetString(PyExc_ValueError, "role must be 'p' (producer), 'c' (consumer) or 'o' (observer)");
        return -1;
    }
    if (capacity < 2 || (capacity & (capacity - 1)) != 0) {
        PyErr_Format(PyExc_ValueError, "capacity %zd is not a power of two >= 2", capacity);
        return -1;
    }
    if (slot_size < 8 || slot_size % 8 != 0) {
        PyErr_Format(PyExc_ValueError, "slot_size %zd is not a positive multiple of 8", slot_size);
        return -1;
    }
    if (capacity > (PY_SSIZE_T_MAX - RING_HEADER_SIZE) / slot_size) {
        PyErr_SetString(PyExc_OverflowError, "ring too large");
        return -1;
    }
    Py_ssize_t total = RING_HEADER_SIZE + slot_size * capacity;
    if (map_region(buffer, &self->view, offset, total, CACHE_LINE / 2, role != ROLE_OBSERVER, &self->base) < 0)
        return -1;
    self->has_view = 1;
    self->offset = offset;
    uint64_t magic = atomic_load_explicit((au64 *)(self->base + RING_MAGIC_OFFSET), memory_order_acquire);
    uint64_t hdr_slot = *(uint64_t *)(self->base + RING_SLOT_SIZE_OFFSET);
    uint64_t hdr_cap = *(uint64_t *)(self->base + RING_CAPACITY_OFFSET);
    if (magic != RING_MAGIC || hdr_slot != (uint64_t)slot_size || hdr_cap != (uint64_t)capacity) {
        PyErr_Format(PyExc_ValueError,
                     "no ring of slot_size %zd and capacity %zd at offset %zd "
                     "(found magic %#llx, slot_size %llu, capacity %llu): initialise it with ring_format()",
                     slot_size, capacity, offset, (unsigned long long)magic,
                     (unsigned long long)hdr_slot, (unsigned long long)hdr_cap);
        return -1;
    }
    if (doorbell_offset >= 0) {
        if (doorbell_offset > self->view.len - 4 || doorbell_offset % 4 != 0) {
            PyErr_Format(PyExc_ValueError, "doorbell offset %zd invalid", doorbell_offset);
            return -1;
        }
        self->doorbell = (au32 *)((char *)self->view.buf + doorbell_offset);
        if (wake_target_init(&self->wake, wake_address) < 0)
            return -1;
    }
    self->role = role;
    self->slots = self->base + RING_HEADER_SIZE;
    self->tail = (au64 *)(self->base + RING_TAIL_OFFSET);
    self->head = (au64 *)(self->base + RING_HEAD_OFFSET);
    self->slot_size = (uint64_t)slot_size;
    self->capacity = (uint64_t)capacity;
    self->mask = (uint64_t)capacity - 1;
    /* Resume from the indices in shared memory: a restarted side carries on
     * where the previous incarnation last published. */
    self->local_tail = atomic_load_explicit(self->tail, memory_order_acquire);
    self->local_head = atomic_load_explicit(self->head, memory_order_acquire);
    self->cached_head = self->local_head;
    self->cached_tail = self->local_tail;
    if (role == ROLE_PRODUCER)
        atomic_store_explicit((au64 *)(self->base + RING_PRODUCER_PID_OFFSET), (uint64_t)getpid(), memory_order_relaxed);
    if (role == ROLE_CONSUMER)
        atomic_store_explicit((au64 *)(self->base + RING_CONSUMER_PID_OFFSET), (uint64_t)getpid(), memory_order_relaxed);
    return 0;
}

static int
require_role(Ring *self, int role)
{
    if (self->role == role)
        return 0;
    if (!self->has_view)
        PyErr_SetString(PyExc_RuntimeError, "Ring not initialised");
    else
        PyErr_Format(PyExc_PermissionError, "this Ring handle is the %s side",
                     self->role == ROLE_PRODUCER ? "producer" : self->role == ROLE_CONSUMER ? "consumer" : "observer");
    return -1;
}

/* Producer: free slots, up to what is known. Re-reads head only when the
 * cached value shows fewer than `wanted` free slots (1 for a single push). */
static inline uint64_t
producer_free(Ring *self, uint64_t wanted)
{
    uint64_t t = self->local_tail;
    uint64_t free_slots = self->capacity - (t - self->cached_head);
    if (free_slots < wanted) {
        self->cached_head = atomic_load_explicit(self->head, memory_order_acquire);
        uint64_t depth = t - self->cached_head;
        relaxed_max(self->base, RING_PRODUCER_MAX_DEPTH_OFFSET, depth);
        free_slots = self->capacity - depth;
        if (free_slots == 0) {
            if (!self->in_full_episode) {
                self->in_full_episode = 1;
                relaxed_inc(self->base, RING_FULL_EVENTS_OFFSET);
            }
            return 0;
        }
    }
    self->in_full_episode = 0;
    return free_slots;
}

static inline void
producer_publish(Ring *self, uint64_t new_tail)
{
    self->local_tail = new_tail;
    atomic_store_explicit(self->tail, new_tail, memory_order_release);
    if (self->doorbell)
        doorbell_ring(self->doorbell, &self->wake);
}

/* Consumer: how many slots are readable?  Re-reads tail only when the cached
 * value says the ring is empty (or when `refresh` asks for the newest view). */
static inline uint64_t
consumer_available(Ring *self, int refresh)
{
    uint64_t h = self->local_head;
    uint64_t avail = self->cached_tail - h;
    if (avail == 0 || refresh) {
        self->cached_tail = atomic_load_explicit(self->tail, memory_order_acquire);
        avail = self->cached_tail - h;
        relaxed_max(self->base, RING_CONSUMER_MAX_DEPTH_OFFSET, avail);
    }
    return avail;
}

static inline void
consumer_release(Ring *self, uint64_t new_head)
{
    self->local_head = new_head;
    atomic_store_explicit(self->head, new_head, memory_order_release);
}

PyDoc_STRVAR(Ring_try_push_doc,
"try_push(data) -> bool\n\nCopy `data` (at most slot_size bytes) into the next slot and publish it.\n"
"False when the ring is full: back-pressure, nothing is overwritten.");
static PyObject *
Ring_try_push(Ring *self, PyObject *data)
{
    if (self->role != ROLE_PRODUCER && require_role(self, ROLE_PRODUCER) < 0)
        return NULL;
    if (self->claimed) {
        PyErr_SetString(PyExc_RuntimeError, "try_push() while a claim() is outstanding: commit() it first");
        return NULL;
    }
    Py_buffer src;
    if (PyObject_GetBuffer(data, &src, PyBUF_SIMPLE) < 0)
        return NULL;
    if ((uint64_t)src.len > self->slot_size) {
        PyErr_Format(PyExc_ValueError, "message of %zd bytes does not fit a %llu-byte slot", src.len,
                     (unsigned long long)self->slot_size);
        PyBuffer_Release(&src);
        return NULL;
    }
    if (producer_free(self, 1) == 0) {
        PyBuffer_Release(&src);
        Py_RETURN_FALSE;
    }
    memcpy(slot_at(self, self->local_tail), src.buf, (size_t)src.len);
    PyBuffer_Release(&src);
    producer_publish(self, self->local_tail + 1);
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(Ring_claim_doc,
"claim() -> int\n\nZero-copy write: the byte offset (in the mapped buffer) of the next free slot,\n"
"or -1 when the ring is full. Write the record there, then commit(). Claiming\n"
"again before commit() returns the same slot.");
static PyObject *
Ring_claim(Ring *self, PyObject *unused)
{
    if (self->role != ROLE_PRODUCER && require_role(self, ROLE_PRODUCER) < 0)
        return NULL;
    if (!self->claimed) {
        if (producer_free(self, 1) == 0)
            return PyLong_FromLong(-1);
        self->claimed = 1;
    }
    return PyLong_FromSsize_t((Py_ssize_t)(slot_at(self, self->local_tail) - (char *)self->view.buf));
}

PyDoc_STRVAR(Ring_commit_doc, "commit()\n\nPublish the slot returned by claim().");
static PyObject *
Ring_commit(Ring *self, PyObject *unused)
{
    if (self->role != ROLE_PRODUCER && require_role(self, ROLE_PRODUCER) < 0)
        return NULL;
    if (!self->claimed) {
        PyErr_SetString(PyExc_RuntimeError, "commit() without claim()");
        return NULL;
    }
    self->claimed = 0;
    producer_publish(self, self->local_tail + 1);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Ring_push_batch_doc,
"push_batch(data, count=-1) -> int\n\n`data` holds records back to back, slot_size bytes each. Push as many\n"
"of the first `count` (default: all) as fit, publish them with one store, and\n"
"return how many were pushed (0 when full).");
static PyObject *
Ring_push_batch(Ring *self, PyObject *args)
{
    PyObject *data;
    Py_ssize_t count = -1;
    if (!PyArg_ParseTuple(args, "O|n", &data, &count))
        return NULL;
    if (self->role != ROLE_PRODUCER && require_role(self, ROLE_PRODUCER) < 0)
        return NULL;
    if (self->claimed) {
        PyErr_SetString(PyExc_RuntimeError, "push_batch() while a claim() is outstanding");
        return NULL;
    }
    Py_buffer src;
    if (PyObject_GetBuffer(data, &src, PyBUF_SIMPLE) < 0)
        return NULL;
    uint64_t in_buffer = (uint64_t)src.len / self->slot_size;
    uint64_t wanted = (count < 0 || (uint64_t)count > in_buffer) ? in_buffer : (uint64_t)count;
    uint64_t n = 0;
    if (wanted) {
        uint64_t free_slots = producer_free(self, wanted);
        n = wanted < free_slots ? wanted : free_slots;
    }
    if (n) {
        uint64_t t = self->local_tail;
        uint64_t first = t & self->mask;
        uint64_t run = self->capacity - first;
        if (run > n)
            run = n;
        memcpy(self->slots + first * self->slot_size, src.buf, run * self->slot_size);
        if (n > run)
            memcpy(self->slots, (char *)src.buf + run * self->slot_size, (n - run) * self->slot_size);
        producer_publish(self, t + n);
    }
    PyBuffer_Release(&src);
    return PyLong_FromUnsignedLongLong(n);
}

PyDoc_STRVAR(Ring_try_pop_into_doc,
"try_pop_into(buffer) -> bool\n\nCopy the oldest slot into `buffer` (min of its length and slot_size bytes)\n"
"and release the slot. False when the ring is empty.");
static PyObject *
Ring_try_pop_into(Ring *self, PyObject *dest)
{
    if (self->role != ROLE_CONSUMER && require_role(self, ROLE_CONSUMER) < 0)
        return NULL;
    if (self->peeked) {
        PyErr_SetString(PyExc_RuntimeError, "try_pop_into() while a peek() is outstanding: release() it first");
        return NULL;
    }
    Py_buffer dst;
    if (PyObject_GetBuffer(dest, &dst, PyBUF_WRITABLE) < 0)
        return NULL;
    if (consumer_available(self, 0) == 0) {
        PyBuffer_Release(&dst);
        Py_RETURN_FALSE;
    }
    size_t n = (uint64_t)dst.len < self->slot_size ? (size_t)dst.len : (size_t)self->slot_size;
    memcpy(dst.buf, slot_at(self, self->local_head), n);
    PyBuffer_Release(&dst);
    consumer_release(self, self->local_head + 1);
    Py_RETURN_TRUE;
}

PyDoc_STRVAR(Ring_try_pop_doc, "try_pop() -> bytes | None\n\nConvenience (allocates): the oldest slot as bytes, or None.");
static PyObject *
Ring_try_pop(Ring *self, PyObject *unused)
{
    if (self->role != ROLE_CONSUMER && require_role(self, ROLE_CONSUMER) < 0)
        return NULL;
    if (self->peeked) {
        PyErr_SetString(PyExc_RuntimeError, "try_pop() while a peek() is outstanding: release() it first");
        return NULL;
    }
    if (consumer_available(self, 0) == 0)
        Py_RETURN_NONE;
    PyObject *out = PyBytes_FromStringAndSize(slot_at(self, self->local_head), (Py_ssize_t)self->slot_size);
    if (out)
        consumer_release(self, self->local_head + 1);
    return out;
}

PyDoc_STRVAR(Ring_peek_doc,
"peek() -> int\n\nZero-copy read: the byte offset of the oldest slot, or -1 when empty. Read\n"
"the record in place, then release() it.");
static PyObject *
Ring_peek(Ring *self, PyObject *unused)
{
    if (self->role != ROLE_CONSUMER && require_role(self, ROLE_CONSUMER) < 0)
        return NULL;
    if (!self->peeked) {
        if (consumer_available(self, 0) == 0)
            return PyLong_FromLong(-1);
        self->peeked = 1;
    }
    return PyLong_FromSsize_t((Py_ssize_t)(slot_at(self, self->local_head) - (char *)self->view.buf));
}

PyDoc_STRVAR(Ring_release_doc, "release()\n\nFree the slot returned by peek().");
static PyObject *
Ring_release(Ring *self, PyObject *unused)
{
    if (self->role != ROLE_CONSUMER && require_role(self, ROLE_CONSUMER) < 0)
        return NULL;
    if (!self->peeked) {
        PyErr_SetString(PyExc_RuntimeError, "release() without peek()");
        return NULL;
    }
    self->peeked = 0;
    consumer_release(self, self->local_head + 1);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Ring_drain_into_doc,
"drain_into(buffer, limit=-1) -> int\n\nBatch drain: copy up to `limit` (default: as many as fit in `buffer`)\n"
"readable slots into `buffer`, back to back, release them with one store and\n"
"return how many were copied.");
static PyObject *
Ring_drain_into(Ring *self, PyObject *args)
{
    PyObject *dest;
    Py_ssize_t limit = -1;
    if (!PyArg_ParseTuple(args, "O|n", &dest, &limit))
        return NULL;
    if (self->role != ROLE_CONSUMER && require_role(self, ROLE_CONSUMER) < 0)
        return NULL;
    if (self->peeked) {
        PyErr_SetString(PyExc_RuntimeError, "drain_into() while a peek() is outstanding");
        return NULL;
    }
    Py_buffer dst;
    if (PyObject_GetBuffer(dest, &dst, PyBUF_WRITABLE) < 0)
        return NULL;
    uint64_t room = (uint64_t)dst.len / self->slot_size;
    if (limit >= 0 && (uint64_t)limit < room)
        room = (uint64_t)limit;
    uint64_t n = 0;
    if (room) {
        uint64_t avail = consumer_available(self, 1);
        n = avail < room ? avail : room;
    }
    if (n) {
        uint64_t h = self->local_head;
        uint64_t first = h & self->mask;
        uint64_t run = self->capacity - first;
        if (run > n)
            run = n;
        memcpy(dst.buf, self->slots + first * self->slot_size, run * self->slot_size);
        if (n > run)
            memcpy((char *)dst.buf + run * self->slot_size, self->slots, (n - run) * self->slot_size);
        consumer_release(self, h + n);
    }
    PyBuffer_Release(&dst);
    return PyLong_FromUnsignedLongLong(n);
}

PyDoc_STRVAR(Ring_available_doc,
"available() -> int\n\nConsumer: readable slots right now (fresh acquire load of the tail).");
static PyObject *
Ring_available(Ring *self, PyObject *unused)
{
    if (self->role != ROLE_CONSUMER && require_role(self, ROLE_CONSUMER) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(consumer_available(self, 1));
}

PyDoc_STRVAR(Ring_depth_doc,
"depth() -> int\n\nAny side: published minus consumed, from two acquire loads (an observer's\n"
"snapshot; may be momentarily stale, never torn).");
static PyObject *
Ring_depth(Ring *self, PyObject *unused)
{
    if (!self->has_view) {
        PyErr_SetString(PyExc_RuntimeError, "Ring not initialised");
        return NULL;
    }
    uint64_t h = atomic_load_explicit(self->head, memory_order_acquire);
    uint64_t t = atomic_load_explicit(self->tail, memory_order_acquire);
    return PyLong_FromUnsignedLongLong(t >= h ? t - h : 0);
}

static PyObject *load_field(Ring *self, Py_ssize_t off) {
    if (!self->has_view) {
        PyErr_SetString(PyExc_RuntimeError, "Ring not initialised");
        return NULL;
    }
    return PyLong_FromUnsignedLongLong(atomic_load_explicit((au64 *)(self->base + off), memory_order_acquire));
}
static PyObject *Ring_get_tail(Ring *s, void *c) { return load_field(s, RING_TAIL_OFFSET); }
static PyObject *Ring_get_head(Ring *s, void *c) { return load_field(s, RING_HEAD_OFFSET); }
static PyObject *Ring_get_full_events(Ring *s, void *c) { return load_field(s, RING_FULL_EVENTS_OFFSET); }
static PyObject *Ring_get_max_depth(Ring *s, void *c) {
    PyObject *a = load_field(s, RING_PRODUCER_MAX_DEPTH_OFFSET);
    if (!a) return NULL;
    PyObject *b = load_field(s, RING_CONSUMER_MAX_DEPTH_OFFSET);
    if (!b) { Py_DECREF(a); return NULL; }
    int a_bigger = PyObject_RichCompareBool(a, b, Py_GT);
    if (a_bigger) { Py_DECREF(b); return a; }
    Py_DECREF(a);
    return b;
}
static PyObject *Ring_get_capacity(Ring *s, void *c) { return PyLong_FromUnsignedLongLong(s->capacity); }
static PyObject *Ring_get_slot_size(Ring *s, void *c) { return PyLong_FromUnsignedLongLong(s->slot_size); }
static PyObject *Ring_get_offset(Ring *s, void *c) { return PyLong_FromSsize_t(s->offset); }
static PyObject *Ring_get_role(Ring *s, void *c) { return PyUnicode_FromOrdinal(s->role ? s->role : '?'); }

static PyObject *Ring_get_wake_sends(Ring *s, void *c) { return PyLong_FromUnsignedLongLong(s->wake.sends); }
static PyObject *Ring_get_wake_send_errors(Ring *s, void *c) { return PyLong_FromUnsignedLongLong(s->wake.send_errors); }

static PyGetSetDef Ring_getset[] = {
    {"wake_sends", (getter)Ring_get_wake_sends, NULL, "wake datagrams this producer sent to a poll()ing consumer", NULL},
    {"wake_send_errors", (getter)Ring_get_wake_send_errors, NULL,
     "wake datagrams refused (consumer gone) or not queued (it already had wakes waiting)", NULL},
    {"tail", (getter)Ring_get_tail, NULL, "messages published so far (shared tail index)", NULL},
    {"head", (getter)Ring_get_head, NULL, "messages consumed so far (shared head index)", NULL},
    {"full_events", (getter)Ring_get_full_events, NULL, "times the producer found the ring full (once per episode)", NULL},
    {"max_depth", (getter)Ring_get_max_depth, NULL,
     "highest depth seen when either side re-read the other's index (a lower bound on the true peak; exact when full)", NULL},
    {"capacity", (getter)Ring_get_capacity, NULL, "number of slots", NULL},
    {"slot_size", (getter)Ring_get_slot_size, NULL, "bytes per slot", NULL},
    {"offset", (getter)Ring_get_offset, NULL, "byte offset of the ring header in the buffer", NULL},
    {"role", (getter)Ring_get_role, NULL, "'p', 'c' or 'o'", NULL},
    {NULL},
};

static PyMethodDef Ring_methods[] = {
    {"try_push", (PyCFunction)Ring_try_push, METH_O, Ring_try_push_doc},
    {"claim", (PyCFunction)Ring_claim, METH_NOARGS, Ring_claim_doc},
    {"commit", (PyCFunction)Ring_commit, METH_NOARGS, Ring_commit_doc},
    {"push_batch", (PyCFunction)Ring_push_batch, METH_VARARGS, Ring_push_batch_doc},
    {"try_pop_into", (PyCFunction)Ring_try_pop_into, METH_O, Ring_try_pop_into_doc},
    {"try_pop", (PyCFunction)Ring_try_pop, METH_NOARGS, Ring_try_pop_doc},
    {"peek", (PyCFunction)Ring_peek, METH_NOARGS, Ring_peek_doc},
    {"release", (PyCFunction)Ring_release, METH_NOARGS, Ring_release_doc},
    {"drain_into", (PyCFunction)Ring_drain_into, METH_VARARGS, Ring_drain_into_doc},
    {"available", (PyCFunction)Ring_available, METH_NOARGS, Ring_available_doc},
    {"depth", (PyCFunction)Ring_depth, METH_NOARGS, Ring_depth_doc},
    {NULL},
};

static PyTypeObject RingType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.runtime._shm.Ring",
    .tp_basicsize = sizeof(Ring),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Ring(buffer, offset, slot_size, capacity, role, doorbell_offset=-1, wake_address=None)\n\n"
              "One side of a single-producer/single-consumer ring of fixed-size slots laid out\n"
              "at `offset` in `buffer` (formatted by ring_format). role: 'p', 'c' or 'o'.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Ring_init,
    .tp_dealloc = Ring_dealloc,
    .tp_methods = Ring_methods,
    .tp_getset = Ring_getset,
};

PyDoc_STRVAR(ring_format_doc,
"ring_format(buffer, offset, slot_size, capacity)\n\nWrite a fresh ring header (indices and counters zero) at `offset`. Only the\n"
"segment's creator calls this, before any side attaches.");
static PyObject *
ring_format(PyObject *mod, PyObject *args)
{
    PyObject *buffer;
    Py_ssize_t offset, slot_size, capacity;
    if (!PyArg_ParseTuple(args, "Onnn", &buffer, &offset, &slot_size, &capacity))
        return NULL;
    if (capacity < 2 || (capacity & (capacity - 1)) != 0 || slot_size < 8 || slot_size % 8 != 0) {
        PyErr_SetString(PyExc_ValueError, "capacity must be a power of two >= 2 and slot_size a multiple of 8");
        return NULL;
    }
    Py_buffer view;
    char *base;
    if (map_region(buffer, &view, offset, RING_HEADER_SIZE, CACHE_LINE / 2, 1, &base) < 0)
        return NULL;
    memset(base, 0, RING_HEADER_SIZE);
    *(uint64_t *)(base + RING_SLOT_SIZE_OFFSET) = (uint64_t)slot_size;
    *(uint64_t *)(base + RING_CAPACITY_OFFSET) = (uint64_t)capacity;
    atomic_store_explicit((au64 *)(base + RING_MAGIC_OFFSET), RING_MAGIC, memory_order_release);
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

/* ====================================================================== */
/* Doorbell                                                                */
/* ====================================================================== */

typedef struct {
    BUFFER_HANDLE_HEAD
    au32 *word;
    uint64_t waits;   /* process-local: futex waits entered */
    uint64_t wakeups; /* process-local: waits ended by a ring, not a timeout */
    WakeTarget wake;  /* ring(): the consumer's wake socket, fd -1 if none */
} Doorbell;

static int
Doorbell_init(Doorbell *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"buffer", "offset", "wake_address", NULL};
    PyObject *buffer, *wake_address = NULL;
    Py_ssize_t offset;
    char *p;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "On|O", kwlist, &buffer, &offset, &wake_address))
        return -1;
    PyObject *pair = Py_BuildValue("(On)", buffer, offset);
    if (pair == NULL)
        return -1;
    int rc = handle_init_at((PyObject *)self, pair, NULL, 4, 4, &p);
    Py_DECREF(pair);
    if (rc < 0)
        return -1;
    self->word = (au32 *)p;
    return wake_target_init(&self->wake, wake_address);
}

/* Ring and Doorbell hold a socket beside the buffer export. */
static void
wake_handle_dealloc(PyObject *self, WakeTarget *t)
{
    wake_target_close(t);
    handle_dealloc(self);
}
static void Ring_dealloc(PyObject *self) { wake_handle_dealloc(self, &((Ring *)self)->wake); }
static void Doorbell_dealloc(PyObject *self) { wake_handle_dealloc(self, &((Doorbell *)self)->wake); }

#define DOORBELL_READY(self) \
    if (!(self)->has_view) { PyErr_SetString(PyExc_RuntimeError, "Doorbell not initialised"); return NULL; }

PyDoc_STRVAR(Doorbell_announce_doc,
"announce()\n\nConsumer: declare that it is about to sleep. Re-check every input ring after\n"
"this and call cancel() if any has data; otherwise wait().");
static PyObject *
Doorbell_announce(Doorbell *self, PyObject *unused)
{
    DOORBELL_READY(self);
    atomic_store_explicit(self->word, DOORBELL_ASLEEP, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Doorbell_announce_poll_doc,
"announce_poll()\n\nConsumer: declare that it is about to wait in poll() on its wake socket (bound\n"
"at the address its producers were given). Re-check every input ring after this, cancel() if any\n"
"has data; otherwise poll, then settle().");
static PyObject *
Doorbell_announce_poll(Doorbell *self, PyObject *unused)
{
    DOORBELL_READY(self);
    atomic_store_explicit(self->word, DOORBELL_ASLEEP_POLL, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Doorbell_settle_doc,
"settle() -> bool\n\nConsumer, after its poll() returned: withdraw the announcement. True when a\n"
"producer had rung it (its byte is on the wake socket, or on its way: drain after settling).");
static PyObject *
Doorbell_settle(Doorbell *self, PyObject *unused)
{
    DOORBELL_READY(self);
    uint32_t was = atomic_exchange_explicit(self->word, DOORBELL_AWAKE, memory_order_acq_rel);
    self->waits++;
    if (was == DOORBELL_AWAKE) {
        self->wakeups++;
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

PyDoc_STRVAR(Doorbell_cancel_doc, "cancel()\n\nConsumer: withdraw the announcement (work arrived).");
static PyObject *
Doorbell_cancel(Doorbell *self, PyObject *unused)
{
    DOORBELL_READY(self);
    atomic_store_explicit(self->word, DOORBELL_AWAKE, memory_order_relaxed);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(Doorbell_wait_doc,
"wait(timeout_ns) -> bool\n\nConsumer: sleep until a producer rings or the timeout passes (a signal also\n"
"ends the wait). True when woken by a ring.");
static PyObject *
Doorbell_wait(Doorbell *self, PyObject *arg)
{
    DOORBELL_READY(self);
    long long timeout_ns = PyLong_AsLongLong(arg);
    if (timeout_ns == -1 && PyErr_Occurred())
        return NULL;
    if (timeout_ns < 0)
        timeout_ns = 0;
    struct timespec ts = {.tv_sec = timeout_ns / 1000000000LL, .tv_nsec = timeout_ns % 1000000000LL};
    long rc;
    self->waits++;
    Py_BEGIN_ALLOW_THREADS
    rc = syscall(SYS_futex, (uint32_t *)self->word, FUTEX_WAIT, DOORBELL_ASLEEP, &ts, NULL, 0);
    Py_END_ALLOW_THREADS
    (void)rc;
    /* Rung: the producer swapped the word to AWAKE. Timeout or signal: we
     * withdraw ourselves; exchange tells us whether a ring raced the timeout. */
    uint32_t was = atomic_exchange_explicit(self->word, DOORBELL_AWAKE, memory_order_acq_rel);
    if (was == DOORBELL_AWAKE) {
        self->wakeups++;
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

PyDoc_STRVAR(Doorbell_ring_doc, "ring()\n\nProducer: wake the consumer if it announced sleep (rings publish this themselves).");
static PyObject *
Doorbell_ring(Doorbell *self, PyObject *unused)
{
    DOORBELL_READY(self);
    doorbell_ring(self->word, &self->wake);
    Py_RETURN_NONE;
}

static PyObject *Doorbell_get_waits(Doorbell *s, void *c) { return PyLong_FromUnsignedLongLong(s->waits); }
static PyObject *Doorbell_get_wakeups(Doorbell *s, void *c) { return PyLong_FromUnsignedLongLong(s->wakeups); }
static PyObject *Doorbell_get_asleep(Doorbell *s, void *c) {
    DOORBELL_READY(s);
    return PyBool_FromLong(atomic_load_explicit(s->word, memory_order_acquire) != DOORBELL_AWAKE);
}
static PyObject *Doorbell_get_wake_sends(Doorbell *s, void *c) { return PyLong_FromUnsignedLongLong(s->wake.sends); }

static PyGetSetDef Doorbell_getset[] = {
    {"waits", (getter)Doorbell_get_waits, NULL, "futex waits entered by this handle", NULL},
    {"wakeups", (getter)Doorbell_get_wakeups, NULL, "waits ended by a producer's ring", NULL},
    {"asleep", (getter)Doorbell_get_asleep, NULL, "the consumer has announced sleep", NULL},
    {"wake_sends", (getter)Doorbell_get_wake_sends, NULL, "ring(): wake datagrams sent by this handle", NULL},
    {NULL},
};

static PyMethodDef Doorbell_methods[] = {
    {"announce", (PyCFunction)Doorbell_announce, METH_NOARGS, Doorbell_announce_doc},
    {"announce_poll", (PyCFunction)Doorbell_announce_poll, METH_NOARGS, Doorbell_announce_poll_doc},
    {"settle", (PyCFunction)Doorbell_settle, METH_NOARGS, Doorbell_settle_doc},
    {"cancel", (PyCFunction)Doorbell_cancel, METH_NOARGS, Doorbell_cancel_doc},
    {"wait", (PyCFunction)Doorbell_wait, METH_O, Doorbell_wait_doc},
    {"ring", (PyCFunction)Doorbell_ring, METH_NOARGS, Doorbell_ring_doc},
    {NULL},
};

static PyTypeObject DoorbellType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.runtime._shm.Doorbell",
    .tp_basicsize = sizeof(Doorbell),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Doorbell(buffer, offset, wake_address=None)\n\nA 32-bit futex word in shared memory: the consumer announces, re-checks its\n"
              "rings, then waits (futex, or poll() on its wake socket); a producer rings only when the consumer\n"
              "has announced. wake_address: the consumer's wake socket (for ring() by a producer).",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Doorbell_init,
    .tp_dealloc = Doorbell_dealloc,
    .tp_methods = Doorbell_methods,
    .tp_getset = Doorbell_getset,
};

/* ====================================================================== */
/* Counter: one single-writer 64-bit value                                 */
/* ====================================================================== */

typedef struct {
    BUFFER_HANDLE_HEAD
    au64 *value;
} Counter;

static int
Counter_init(Counter *self, PyObject *args, PyObject *kwds)
{
    char *p;
    if (handle_init_at((PyObject *)self, args, kwds, 8, 8, &p) < 0)
        return -1;
    self->value = (au64 *)p;
    return 0;
}

#define COUNTER_READY(self) \
    if (!(self)->has_view) { PyErr_SetString(PyExc_RuntimeError, "Counter not initialised"); return NULL; }

/* Single writer: a relaxed load and a release store, no locked instruction. */
static PyObject *
Counter_inc(Counter *self, PyObject *unused)
{
    COUNTER_READY(self);
    atomic_store_explicit(self->value, atomic_load_explicit(self->value, memory_order_relaxed) + 1, memory_order_release);
    Py_RETURN_NONE;
}

static PyObject *
Counter_add(Counter *self, PyObject *arg)
{
    COUNTER_READY(self);
    long long delta = PyLong_AsLongLong(arg);
    if (delta == -1 && PyErr_Occurred())
        return NULL;
    atomic_store_explicit(self->value, atomic_load_explicit(self->value, memory_order_relaxed) + (uint64_t)delta,
                          memory_order_release);
    Py_RETURN_NONE;
}

static PyObject *
Counter_set(Counter *self, PyObject *arg)
{
    COUNTER_READY(self);
    long long v = PyLong_AsLongLong(arg);
    if (v == -1 && PyErr_Occurred())
        return NULL;
    atomic_store_explicit(self->value, (uint64_t)v, memory_order_release);
    Py_RETURN_NONE;
}

static PyObject *
Counter_get(Counter *self, PyObject *unused)
{
    COUNTER_READY(self);
    return PyLong_FromLongLong((long long)atomic_load_explicit(self->value, memory_order_acquire));
}

static PyMethodDef Counter_methods[] = {
    {"inc", (PyCFunction)Counter_inc, METH_NOARGS, "add one (single writer)"},
    {"add", (PyCFunction)Counter_add, METH_O, "add a signed delta (single writer)"},
    {"set", (PyCFunction)Counter_set, METH_O, "store a value (single writer)"},
    {"get", (PyCFunction)Counter_get, METH_NOARGS, "acquire load of the value (signed 64-bit)"},
    {NULL},
};

static PyTypeObject CounterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.runtime._shm.Counter",
    .tp_basicsize = sizeof(Counter),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Counter(buffer, offset)\n\nA 64-bit value in shared memory with exactly one writing process.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Counter_init,
    .tp_dealloc = handle_dealloc,
    .tp_methods = Counter_methods,
};

/* ====================================================================== */
/* Heartbeat: the duty-cycle clock of one process record                   */
/* ====================================================================== */

typedef struct {
    BUFFER_HANDLE_HEAD
    char *rec;
    uint64_t cycle_start;
    uint64_t beats;
    uint64_t max_duty;
    uint64_t work;
} Heartbeat;

static int
Heartbeat_init(Heartbeat *self, PyObject *args, PyObject *kwds)
{
    if (handle_init_at((PyObject *)self, args, kwds, PROC_RECORD_SIZE, 64, &self->rec) < 0)
        return -1;
    self->beats = atomic_load_explicit((au64 *)(self->rec + PROC_BEATS_OFFSET), memory_order_relaxed);
    self->max_duty = atomic_load_explicit((au64 *)(self->rec + PROC_MAX_DUTY_NS_OFFSET), memory_order_relaxed);
    self->work = atomic_load_explicit((au64 *)(self->rec + PROC_WORK_OFFSET), memory_order_relaxed);
    return 0;
}

#define HB_FIELD(self, off) ((au64 *)((self)->rec + (off)))

static PyObject *
Heartbeat_begin(Heartbeat *self, PyObject *unused)
{
    if (!self->has_view) {
        PyErr_SetString(PyExc_RuntimeError, "Heartbeat not initialised");
        return NULL;
    }
    self->cycle_start = mono_ns();
    Py_RETURN_NONE;
}

static PyObject *
Heartbeat_end(Heartbeat *self, PyObject *arg)
{
    if (!self->has_view) {
        PyErr_SetString(PyExc_RuntimeError, "Heartbeat not initialised");
        return NULL;
    }
    long long work = PyLong_AsLongLong(arg);
    if (work == -1 && PyErr_Occurred())
        return NULL;
    uint64_t now = mono_ns();
    uint64_t duty = now - self->cycle_start;
    if (duty > self->max_duty) {
        self->max_duty = duty;
        atomic_store_explicit(HB_FIELD(self, PROC_MAX_DUTY_NS_OFFSET), duty, memory_order_relaxed);
    }
    if (work > 0) {
        self->work += (uint64_t)work;
        atomic_store_explicit(HB_FIELD(self, PROC_WORK_OFFSET), self->work, memory_order_relaxed);
    }
    atomic_store_explicit(HB_FIELD(self, PROC_LAST_DUTY_NS_OFFSET), duty, memory_order_relaxed);
    atomic_store_explicit(HB_FIELD(self, PROC_LAST_BEAT_MONO_NS_OFFSET), now, memory_order_relaxed);
    atomic_store_explicit(HB_FIELD(self, PROC_BEATS_OFFSET), ++self->beats, memory_order_release);
    Py_RETURN_NONE;
}

static PyObject *Heartbeat_get_beats(Heartbeat *s, void *c) { return PyLong_FromUnsignedLongLong(s->beats); }
static PyObject *Heartbeat_get_max_duty(Heartbeat *s, void *c) { return PyLong_FromUnsignedLongLong(s->max_duty); }

static PyGetSetDef Heartbeat_getset[] = {
    {"beats", (getter)Heartbeat_get_beats, NULL, "duty cycles completed", NULL},
    {"max_duty_ns", (getter)Heartbeat_get_max_duty, NULL, "longest duty cycle (do_work only), ns", NULL},
    {NULL},
};

static PyMethodDef Heartbeat_methods[] = {
    {"begin", (PyCFunction)Heartbeat_begin, METH_NOARGS, "start timing a duty cycle"},
    {"end", (PyCFunction)Heartbeat_end, METH_O,
     "end(work): finish the duty cycle: beat, record its length and the work done"},
    {NULL},
};

static PyTypeObject HeartbeatType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.runtime._shm.Heartbeat",
    .tp_basicsize = sizeof(Heartbeat),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Heartbeat(buffer, offset)\n\nThe writer of one process record: beat count, last beat (CLOCK_MONOTONIC ns),\n"
              "longest duty cycle and total work.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Heartbeat_init,
    .tp_dealloc = handle_dealloc,
    .tp_methods = Heartbeat_methods,
    .tp_getset = Heartbeat_getset,
};

/* ====================================================================== */
/* AtomicView: loads and stores at arbitrary aligned offsets               */
/* ====================================================================== */

typedef struct {
    BUFFER_HANDLE_HEAD
} AtomicView;

static int
AtomicView_init(AtomicView *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"buffer", "writable", NULL};
    PyObject *buffer;
    int writable = 1;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "O|p", kwlist, &buffer, &writable))
        return -1;
    if (self->has_view) {
        PyErr_SetString(PyExc_RuntimeError, "AtomicView already initialised");
        return -1;
    }
    if (PyObject_GetBuffer(buffer, &self->view, writable ? PyBUF_WRITABLE : PyBUF_SIMPLE) < 0)
        return -1;
    self->has_view = 1;
    return 0;
}

static int
view_word(AtomicView *self, Py_ssize_t off, Py_ssize_t size, char **out)
{
    if (!self->has_view) {
        PyErr_SetString(PyExc_RuntimeError, "AtomicView not initialised");
        return -1;
    }
    if (off < 0 || off > self->view.len - size) {
        PyErr_Format(PyExc_IndexError, "offset %zd outside the %zd-byte buffer", off, self->view.len);
        return -1;
    }
    char *p = (char *)self->view.buf + off;
    if ((uintptr_t)p % (uintptr_t)size) {
        PyErr_Format(PyExc_ValueError, "offset %zd is not %zd-byte aligned", off, size);
        return -1;
    }
    *out = p;
    return 0;
}

static PyObject *
AtomicView_load(AtomicView *self, PyObject *arg)
{
    Py_ssize_t off = PyLong_AsSsize_t(arg);
    char *p;
    if ((off == -1 && PyErr_Occurred()) || view_word(self, off, 8, &p) < 0)
        return NULL;
    return PyLong_FromUnsignedLongLong(atomic_load_explicit((au64 *)p, memory_order_acquire));
}

static PyObject *
AtomicView_load_signed(AtomicView *self, PyObject *arg)
{
    Py_ssize_t off = PyLong_AsSsize_t(arg);
    char *p;
    if ((off == -1 && PyErr_Occurred()) || view_word(self, off, 8, &p) < 0)
        return NULL;
    return PyLong_FromLongLong((long long)atomic_load_explicit((au64 *)p, memory_order_acquire));
}

static PyObject *
AtomicView_store(AtomicView *self, PyObject *args)
{
    Py_ssize_t off;
    PyObject *value;
    char *p;
    if (!PyArg_ParseTuple(args, "nO", &off, &value) || view_word(self, off, 8, &p) < 0)
        return NULL;
    if (self->view.readonly) {
        PyErr_SetString(PyExc_PermissionError, "read-only view");
        return NULL;
    }
    /* Accept the whole u64 range and negative i64 (stored two's complement). */
    uint64_t v = PyLong_AsUnsignedLongLong(value);
    if (v == (uint64_t)-1 && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_OverflowError))
            return NULL;
        PyErr_Clear();
        long long s = PyLong_AsLongLong(value);
        if (s == -1 && PyErr_Occurred())
            return NULL;
        v = (uint64_t)s;
    }
    atomic_store_explicit((au64 *)p, v, memory_order_release);
    Py_RETURN_NONE;
}

static PyMethodDef AtomicView_methods[] = {
    {"load", (PyCFunction)AtomicView_load, METH_O, "load(offset) -> int: acquire load of an aligned u64"},
    {"load_signed", (PyCFunction)AtomicView_load_signed, METH_O, "load_signed(offset) -> int: as load, as i64"},
    {"store", (PyCFunction)AtomicView_store, METH_VARARGS, "store(offset, value): release store of an aligned 64-bit word"},
    {NULL},
};

static PyTypeObject AtomicViewType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.runtime._shm.AtomicView",
    .tp_basicsize = sizeof(AtomicView),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "AtomicView(buffer, writable=True)\n\nAcquire loads and release stores of aligned 64-bit words in a buffer.",
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)AtomicView_init,
    .tp_dealloc = handle_dealloc,
    .tp_methods = AtomicView_methods,
};

/* ====================================================================== */

static PyObject *
monotonic_ns(PyObject *mod, PyObject *unused)
{
    return PyLong_FromUnsignedLongLong(mono_ns());
}

static PyMethodDef module_methods[] = {
    {"ring_format", ring_format, METH_VARARGS, ring_format_doc},
    {"monotonic_ns", monotonic_ns, METH_NOARGS, "CLOCK_MONOTONIC in ns (the clock of heartbeats)"},
    {NULL},
};

static struct PyModuleDef shm_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "appliance.runtime._shm",
    .m_doc = "C11 atomics over shared memory: SPSC ring, doorbell, counters, heartbeats.",
    .m_size = -1,
    .m_methods = module_methods,
};

#define ADD_INT(m, name) \
    if (PyModule_AddIntConstant((m), #name, (long)(name)) < 0) goto fail

PyMODINIT_FUNC
PyInit__shm(void)
{
    PyTypeObject *types[] = {&RingType, &DoorbellType, &CounterType, &HeartbeatType, &AtomicViewType};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (PyType_Ready(types[i]) < 0)
            return NULL;
    PyObject *m = PyModule_Create(&shm_module);
    if (!m)
        return NULL;
    const char *names[] = {"Ring", "Doorbell", "Counter", "Heartbeat", "AtomicView"};
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        Py_INCREF(types[i]);
        if (PyModule_AddObject(m, names[i], (PyObject *)types[i]) < 0) {
            Py_DECREF(types[i]);
            goto fail;
        }
    }
    if (PyModule_AddObject(m, "RING_MAGIC", PyLong_FromUnsignedLongLong(RING_MAGIC)) < 0)
        goto fail;
    ADD_INT(m, CACHE_LINE);
    ADD_INT(m, DOORBELL_AWAKE);
    ADD_INT(m, DOORBELL_ASLEEP);
    ADD_INT(m, DOORBELL_ASLEEP_POLL);
    ADD_INT(m, RING_MAGIC_OFFSET);
    ADD_INT(m, RING_SLOT_SIZE_OFFSET);
    ADD_INT(m, RING_CAPACITY_OFFSET);
    ADD_INT(m, RING_TAIL_OFFSET);
    ADD_INT(m, RING_FULL_EVENTS_OFFSET);
    ADD_INT(m, RING_PRODUCER_MAX_DEPTH_OFFSET);
    ADD_INT(m, RING_PRODUCER_PID_OFFSET);
    ADD_INT(m, RING_HEAD_OFFSET);
    ADD_INT(m, RING_CONSUMER_MAX_DEPTH_OFFSET);
    ADD_INT(m, RING_CONSUMER_PID_OFFSET);
    ADD_INT(m, RING_HEADER_SIZE);
    ADD_INT(m, PROC_PID_OFFSET);
    ADD_INT(m, PROC_STATE_OFFSET);
    ADD_INT(m, PROC_BEATS_OFFSET);
    ADD_INT(m, PROC_LAST_BEAT_MONO_NS_OFFSET);
    ADD_INT(m, PROC_MAX_DUTY_NS_OFFSET);
    ADD_INT(m, PROC_IDLE_STRATEGY_OFFSET);
    ADD_INT(m, PROC_CPU_OFFSET);
    ADD_INT(m, PROC_STARTED_NS_OFFSET);
    ADD_INT(m, PROC_WORK_OFFSET);
    ADD_INT(m, PROC_LAST_DUTY_NS_OFFSET);
    ADD_INT(m, PROC_RECORD_SIZE);
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
