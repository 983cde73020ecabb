/* The compiled feed path: ITCH decode, order books, top-N snapshot and the BookUpdate / market-state
 * writes of one MoldUDP64 payload in one call (appliance.feed.fast wraps it; appliance.feed.books,
 * book.py and outputs.py are the reference it must agree with, message by message: tests/feed/
 * test_feed_fast_diff.py).
 *
 * It carries no copy of a layout: configure() receives, from the one Python table of each,
 *   - the ITCH fields it reads, by (type code, field name) -> (offset, size), and every type's size;
 *   - the BookUpdate and MarketState record fields, by name -> (offset, size), with their headers;
 *   - the book counters' names (feed/books.py COUNTER_NAMES) and the BOOK_FLAG_* values;
 * and checks each size against what it stores there.
 *
 * State: one open-addressing hash of every live order, keyed by (reference, symbol id) as the
 * reference keeps one dict per book; per book and side a sorted array of price levels, best first.
 * Memory grows with the live orders and levels, as the reference's dicts do (a hostile feed adding
 * endless orders grows both); it is counted (memory_bytes, order_count) and an allocation failure
 * refuses the add, latches the book inconsistent ("no_memory") and counts alloc_failures.
 * Nothing here trusts the bytes: every block is bounds-checked against the type's size first.
 *
 * accept_packet: the MoldUDP64 sequencer's in-order case (feed/sequencer.py, the reference) and the packet's
 * apply in one call; it reads and writes the Python sequencer's own slots (see bind_sequencer).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <errno.h>
#include <sys/socket.h>
#include <netinet/in.h>

#define LOCATES 65536
#define MAX_DEPTH 16
#define U32_MAX 0xFFFFFFFFull
#define U16_MAX 0xFFFFu

typedef struct { int16_t off; int16_t size; } Field;

/* ---------------------------------------------------------------- configuration (from the Python tables) */

static int configured = 0;
static uint16_t type_size[256];
static uint8_t print_type[256];             /* E C P Q: may set a last trade */
/* ITCH fields */
static Field f_locate, f_timestamp;
static Field fA_ref, fA_side, fA_shares, fA_price, fF_ref, fF_side, fF_shares, fF_price;
static Field fE_ref, fE_shares, fC_ref, fC_shares, fC_printable, fC_price, fX_ref, fX_shares, fD_ref;
static Field fU_old, fU_new, fU_shares, fU_price, fP_side, fP_shares, fP_price, fQ_shares, fQ_price;
static Field fR_stock, fH_state, fS_event;
/* BookUpdate */
static int depth;
static Field bu_type, bu_version, bu_size, bu_sid, bu_flags, bu_state, bu_bid_levels, bu_ask_levels;
static Field bu_bid_price[MAX_DEPTH], bu_bid_shares[MAX_DEPTH], bu_ask_price[MAX_DEPTH], bu_ask_shares[MAX_DEPTH];
static Field bu_last_price, bu_last_shares, bu_useq, bu_mold, bu_t_exchange, bu_t_rx, bu_t_out, bu_count;
static Field bu_bid_orders[MAX_DEPTH], bu_ask_orders[MAX_DEPTH], bu_trade_seq, bu_trade_t, bu_aggressor;
static uint64_t bu_type_id, bu_version_id, bu_record_size;
/* MarketState */
static Field ms_seqlock, ms_symbol, ms_bid_price, ms_bid_shares, ms_ask_price, ms_ask_shares, ms_last_price,
    ms_last_shares, ms_flags, ms_state, ms_pad0, ms_mark, ms_useq, ms_t_exchange, ms_t_update;
static uint64_t ms_record_size;
/* counters */
enum { UNKNOWN_ORDER, OVER_EXECUTION, DUPLICATE_ADD, BAD_SHARES, CROSSED, LOCKED, MESSAGES, UNSUBSCRIBED,
       UNSUBSCRIBED_DIRECTORY, DIRECTORY_CHANGES, SYSTEM_EVENTS, BROKEN_TRADES, IGNORED, N_COUNTERS };
static const char *counter_names[N_COUNTERS] = {
    "unknown_order", "over_execution", "duplicate_add", "bad_shares", "crossed", "locked", "messages",
    "unsubscribed", "unsubscribed_directory", "directory_changes", "system_events", "broken_trades", "ignored"};
static int counter_slot[N_COUNTERS];
static Py_ssize_t counters_needed;
/* flags */
static uint8_t FL_STALE, FL_CROSSED, FL_LOCKED, FL_HALTED, FL_INCONSISTENT, FLAGS_BAD;
/* scanner counter slots (appliance.wire.itch DECODED, FILTERED_OUT, MALFORMED) */
static int sc_decoded, sc_filtered, sc_malformed;

enum { ERR_NONE, ERR_UNKNOWN_ORDER, ERR_OVER_EXECUTION, ERR_DUPLICATE_ADD, ERR_BAD_SHARES, ERR_NO_MEMORY,
       ERR_OTHER };

static int get_field(PyObject *table, PyObject *key, int size, Field *out, const char *what) {
    PyObject *v = PyDict_GetItemWithError(table, key);
    if (!v) {
        if (!PyErr_Occurred()) PyErr_Format(PyExc_ValueError, "%s: no field %R", what, key);
        return -1;
    }
    long off, sz;
    if (!PyArg_ParseTuple(v, "ll", &off, &sz)) return -1;
    if (off < 0 || off > 4096 || (size && sz != size) || (!size && sz != 1 && sz != 2 && sz != 4 && sz != 8 && sz != 6)) {
        PyErr_Format(PyExc_ValueError, "%s field %R: offset %ld size %ld, the C path stores %d bytes", what, key, off, sz, size);
        return -1;
    }
    out->off = (int16_t)off;
    out->size = (int16_t)sz;
    return 0;
}

static int rec_field(PyObject *table, const char *name, int size, Field *out, const char *what) {
    PyObject *key = PyUnicode_FromString(name);
    if (!key) return -1;
    int r = get_field(table, key, size, out, what);
    Py_DECREF(key);
    return r;
}

static int itch_field(PyObject *table, char code, const char *name, int size, Field *out) {
    PyObject *key = Py_BuildValue("(Cs)", (int)code, name);
    if (!key) return -1;
    int r = get_field(table, key, size, out, "ITCH");
    Py_DECREF(key);
    return r;
}

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *itch, *sizes, *bu, *bu_header, *ms, *names, *flags, *scan_slots;
    if (!PyArg_ParseTuple(args, "O!OO!OO!OOO:configure", &PyDict_Type, &itch, &sizes, &PyDict_Type, &bu, &bu_header,
                          &PyDict_Type, &ms, &names, &flags, &scan_slots))
        return NULL;
    PyObject *seq = PySequence_Fast(sizes, "sizes must be a sequence of 256 ints");
    if (!seq) return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != 256) { Py_DECREF(seq); PyErr_SetString(PyExc_ValueError, "sizes: 256 entries"); return NULL; }
    for (int t = 0; t < 256; t++) {
        long s = PyLong_AsLong(PySequence_Fast_GET_ITEM(seq, t));
        if (s < 0 || s > 65535) { Py_DECREF(seq); if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "bad size"); return NULL; }
        type_size[t] = (uint16_t)s;
    }
    Py_DECREF(seq);
    memset(print_type, 0, sizeof print_type);
    print_type['E'] = print_type['C'] = print_type['P'] = print_type['Q'] = 1;
    if (itch_field(itch, 'A', "stock_locate", 2, &f_locate) || itch_field(itch, 'A', "timestamp", 6, &f_timestamp) ||
        itch_field(itch, 'A', "order_reference_number", 8, &fA_ref) || itch_field(itch, 'A', "buy_sell_indicator", 1, &fA_side) ||
        itch_field(itch, 'A', "shares", 4, &fA_shares) || itch_field(itch, 'A', "price", 4, &fA_price) ||
        itch_field(itch, 'F', "order_reference_number", 8, &fF_ref) || itch_field(itch, 'F', "buy_sell_indicator", 1, &fF_side) ||
        itch_field(itch, 'F', "shares", 4, &fF_shares) || itch_field(itch, 'F', "price", 4, &fF_price) ||
        itch_field(itch, 'E', "order_reference_number", 8, &fE_ref) || itch_field(itch, 'E', "executed_shares", 4, &fE_shares) ||
        itch_field(itch, 'C', "order_reference_number", 8, &fC_ref) || itch_field(itch, 'C', "executed_shares", 4, &fC_shares) ||
        itch_field(itch, 'C', "printable", 1, &fC_printable) || itch_field(itch, 'C', "execution_price", 4, &fC_price) ||
        itch_field(itch, 'X', "order_reference_number", 8, &fX_ref) || itch_field(itch, 'X', "canceled_shares", 4, &fX_shares) ||
        itch_field(itch, 'D', "order_reference_number", 8, &fD_ref) ||
        itch_field(itch, 'U', "original_order_reference_number", 8, &fU_old) ||
        itch_field(itch, 'U', "new_order_reference_number", 8, &fU_new) || itch_field(itch, 'U', "shares", 4, &fU_shares) ||
        itch_field(itch, 'U', "price", 4, &fU_price) || itch_field(itch, 'P', "buy_sell_indicator", 1, &fP_side) ||
        itch_field(itch, 'P', "shares", 4, &fP_shares) ||
        itch_field(itch, 'P', "price", 4, &fP_price) || itch_field(itch, 'Q', "shares", 8, &fQ_shares) ||
        itch_field(itch, 'Q', "cross_price", 4, &fQ_price) || itch_field(itch, 'R', "stock", 8, &fR_stock) ||
        itch_field(itch, 'H', "trading_state", 1, &fH_state) || itch_field(itch, 'S', "event_code", 1, &fS_event))
        return NULL;
    /* every type the books read has its locate and timestamp where 'A' has them */
    const char *typed = "AFECXDUPQRHS";
    for (const char *c = typed; *c; c++) {
        Field l, t;
        if (itch_field(itch, *c, "stock_locate", 2, &l) || itch_field(itch, *c, "timestamp", 6, &t)) return NULL;
        if (l.off != f_locate.off || t.off != f_timestamp.off) { PyErr_Format(PyExc_ValueError, "ITCH %c: header moved", *c); return NULL; }
    }
    /* each field must lie inside its message */
    struct { char c; Field *f; } inside[] = {
        {'A', &fA_price}, {'A', &fA_shares}, {'A', &fA_side}, {'A', &fA_ref}, {'F', &fF_price}, {'F', &fF_ref},
        {'F', &fF_side}, {'F', &fF_shares}, {'E', &fE_shares}, {'E', &fE_ref}, {'C', &fC_price}, {'C', &fC_ref},
        {'C', &fC_shares}, {'C', &fC_printable}, {'X', &fX_shares}, {'X', &fX_ref}, {'D', &fD_ref}, {'U', &fU_price},
        {'U', &fU_old}, {'U', &fU_new}, {'U', &fU_shares}, {'P', &fP_price}, {'P', &fP_shares}, {'P', &fP_side}, {'Q', &fQ_price},
        {'Q', &fQ_shares}, {'R', &fR_stock}, {'H', &fH_state}, {'S', &fS_event}};
    for (size_t i = 0; i < sizeof inside / sizeof inside[0]; i++)
        if (inside[i].f->off + inside[i].f->size > type_size[(uint8_t)inside[i].c]) {
            PyErr_Format(PyExc_ValueError, "ITCH %c: field outside the message", inside[i].c);
            return NULL;
        }
    /* BookUpdate */
    unsigned long long t_id, t_ver, t_size;
    int d;
    if (!PyArg_ParseTuple(bu_header, "KKKi", &t_id, &t_ver, &t_size, &d)) return NULL;
    if (d < 1 || d > MAX_DEPTH) { PyErr_SetString(PyExc_ValueError, "depth out of range"); return NULL; }
    if (rec_field(bu, "type_id", 2, &bu_type, "BookUpdate") || rec_field(bu, "schema_version", 2, &bu_version, "BookUpdate") ||
        rec_field(bu, "size", 4, &bu_size, "BookUpdate") || rec_field(bu, "symbol_id", 4, &bu_sid, "BookUpdate") ||
        rec_field(bu, "flags", 1, &bu_flags, "BookUpdate") || rec_field(bu, "trading_state", 1, &bu_state, "BookUpdate") ||
        rec_field(bu, "bid_levels", 1, &bu_bid_levels, "BookUpdate") || rec_field(bu, "ask_levels", 1, &bu_ask_levels, "BookUpdate") ||
        rec_field(bu, "last_trade_price", 4, &bu_last_price, "BookUpdate") ||
        rec_field(bu, "last_trade_shares", 4, &bu_last_shares, "BookUpdate") ||
        rec_field(bu, "update_sequence", 8, &bu_useq, "BookUpdate") || rec_field(bu, "mold_sequence", 8, &bu_mold, "BookUpdate") ||
        rec_field(bu, "t_exchange_ns", 8, &bu_t_exchange, "BookUpdate") || rec_field(bu, "t_rx_ns", 8, &bu_t_rx, "BookUpdate") ||
        rec_field(bu, "t_feed_out_ns", 8, &bu_t_out, "BookUpdate") || rec_field(bu, "message_count", 4, &bu_count, "BookUpdate") ||
        rec_field(bu, "trade_sequence", 8, &bu_trade_seq, "BookUpdate") ||
        rec_field(bu, "last_trade_t_exchange_ns", 8, &bu_trade_t, "BookUpdate") ||
        rec_field(bu, "last_trade_aggressor", 1, &bu_aggressor, "BookUpdate"))
        return NULL;
    for (int i = 0; i < d; i++) {
        char name[32];
        snprintf(name, sizeof name, "bid_price_%d", i);
        if (rec_field(bu, name, 4, &bu_bid_price[i], "BookUpdate")) return NULL;
        snprintf(name, sizeof name, "bid_shares_%d", i);
        if (rec_field(bu, name, 4, &bu_bid_shares[i], "BookUpdate")) return NULL;
        snprintf(name, sizeof name, "ask_price_%d", i);
        if (rec_field(bu, name, 4, &bu_ask_price[i], "BookUpdate")) return NULL;
        snprintf(name, sizeof name, "ask_shares_%d", i);
        if (rec_field(bu, name, 4, &bu_ask_shares[i], "BookUpdate")) return NULL;
        snprintf(name, sizeof name, "bid_orders_%d", i);
        if (rec_field(bu, name, 2, &bu_bid_orders[i], "BookUpdate")) return NULL;
        snprintf(name, sizeof name, "ask_orders_%d", i);
        if (rec_field(bu, name, 2, &bu_ask_orders[i], "BookUpdate")) return NULL;
    }
    depth = d;
    bu_type_id = t_id; bu_version_id = t_ver; bu_record_size = t_size;
    if (rec_field(ms, "seqlock", 8, &ms_seqlock, "MarketState") || rec_field(ms, "symbol", 8, &ms_symbol, "MarketState") ||
        rec_field(ms, "bid_price", 4, &ms_bid_price, "MarketState") || rec_field(ms, "bid_shares", 4, &ms_bid_shares, "MarketState") ||
        rec_field(ms, "ask_price", 4, &ms_ask_price, "MarketState") || rec_field(ms, "ask_shares", 4, &ms_ask_shares, "MarketState") ||
        rec_field(ms, "last_trade_price", 4, &ms_last_price, "MarketState") ||
        rec_field(ms, "last_trade_shares", 4, &ms_last_shares, "MarketState") ||
        rec_field(ms, "flags", 1, &ms_flags, "MarketState") || rec_field(ms, "trading_state", 1, &ms_state, "MarketState") ||
        rec_field(ms, "pad0", 2, &ms_pad0, "MarketState") || rec_field(ms, "mark_price", 4, &ms_mark, "MarketState") ||
        rec_field(ms, "update_sequence", 8, &ms_useq, "MarketState") ||
        rec_field(ms, "t_exchange_ns", 8, &ms_t_exchange, "MarketState") ||
        rec_field(ms, "t_update_ns", 8, &ms_t_update, "MarketState"))
        return NULL;
    if (ms_seqlock.off % 8) { PyErr_SetString(PyExc_ValueError, "MarketState: seqlock not 8-aligned"); return NULL; }
    ms_record_size = 0;
    /* counters: find each name the C path counts in the Python tuple */
    PyObject *nseq = PySequence_Fast(names, "counter names must be a sequence");
    if (!nseq) return NULL;
    Py_ssize_t nn = PySequence_Fast_GET_SIZE(nseq);
    for (int c = 0; c < N_COUNTERS; c++) {
        counter_slot[c] = -1;
        for (Py_ssize_t i = 0; i < nn; i++) {
            const char *s = PyUnicode_AsUTF8(PySequence_Fast_GET_ITEM(nseq, i));
            if (!s) { Py_DECREF(nseq); return NULL; }
            if (!strcmp(s, counter_names[c])) { counter_slot[c] = (int)i; break; }
        }
        if (counter_slot[c] < 0) { Py_DECREF(nseq); PyErr_Format(PyExc_ValueError, "no counter %s", counter_names[c]); return NULL; }
    }
    counters_needed = nn;
    Py_DECREF(nseq);
    int fs, fc, fl, fh, fi;
    if (!PyArg_ParseTuple(flags, "iiiii", &fs, &fc, &fl, &fh, &fi)) return NULL;
    FL_STALE = (uint8_t)fs; FL_CROSSED = (uint8_t)fc; FL_LOCKED = (uint8_t)fl; FL_HALTED = (uint8_t)fh;
    FL_INCONSISTENT = (uint8_t)fi;
    FLAGS_BAD = FL_STALE | FL_INCONSISTENT | FL_CROSSED;
    if (!PyArg_ParseTuple(scan_slots, "iii", &sc_decoded, &sc_filtered, &sc_malformed)) return NULL;
    if (sc_decoded < 0 || sc_filtered < 0 || sc_malformed < 0 || sc_decoded > 2 || sc_filtered > 2 || sc_malformed > 2) {
        PyErr_SetString(PyExc_ValueError, "scanner counter slots out of range");
        return NULL;
    }
    configured = 1;
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- byte helpers */

static inline uint64_t be(const uint8_t *p, Field f) {
    uint64_t v = 0;
    for (int i = 0; i < f.size; i++) v = (v << 8) | p[f.off + i];
    return v;
}

static inline void put(uint8_t *base, Field f, uint64_t v) {
    uint8_t *p = base + f.off;
    for (int i = 0; i < f.size; i++) { p[i] = (uint8_t)v; v >>= 8; }
}

static inline int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline int64_t monotonic_ns(void) {     /* time.monotonic_ns() */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---------------------------------------------------------------- state */

typedef struct { uint64_t ref; uint32_t sid; uint32_t price; uint32_t shares; uint8_t is_buy; uint8_t used; } Order;
typedef struct { uint32_t price; uint32_t orders; uint64_t qty; } Level;   /* orders: resting there (book.py _bid_count) */
/* One side's levels, best first, in blocks of at most LEVEL_BLOCK (a sorted array cut in pieces): finding a
 * price is two binary searches and an insert or removal moves at most one block, so a book with tens of
 * thousands of levels (a hostile feed, or the bench's uniform prices) costs what a short one does. */
#define LEVEL_BLOCK 64
typedef struct { uint32_t n; Level lv[LEVEL_BLOCK]; } Block;
typedef struct { Block **blk; uint32_t *first; uint32_t nblk, cap; uint32_t n; } Side;   /* first[k]: blk[k]'s best price */

typedef struct {
    Side side[2];                   /* [0] asks (ascending), [1] bids (descending): index is_buy */
    int32_t locate;                 /* -1: no directory yet */
    uint8_t crossed, locked, inconsistent, trading_state, last_error, last_trade_aggressor;
    uint32_t last_trade_price;
    uint64_t last_trade_shares, trades, last_timestamp, last_trade_timestamp, update_sequence, order_count;
    uint32_t pending;               /* publish_packet: 0, or 1 + the messages the pending update covers */
    uint64_t trades_published;
    uint8_t symbol[8];
} Book;

typedef struct {
    PyObject_HEAD
    int nbooks;
    Book *books;
    int32_t *book_of_locate;
    Order *table;
    uint64_t mask, count, memory;
    Py_buffer counters, scan_counters, subscribed, ring_buf, ms_buf;
    PyObject *claim, *commit;       /* the ring's bound methods (None: no ring) */
    Py_ssize_t *ms_offsets;         /* per symbol, its market-state slot (NULL: no table) */
    uint32_t *marks;
    int32_t *touched;
    int ntouched;
    int64_t midnight_ns;
    int feed_stale;
    int event_clock;                /* outputs.py event_clock: the output stamps are the packet's rx (a backtest) */
    uint64_t published, dropped, messages, alloc_failures;
    uint8_t system_event;
    PyObject *seq;                  /* bind_sequencer: the MoldSequencer whose in-order accept runs here (NULL: none) */
    PyObject *live_rx;              /* and the live feed's Receiver (receive_in_order), or NULL */
    PyTypeObject *seq_type;
    Py_ssize_t seq_off[16];         /* its slots' offsets (SQ_*) */
} Books;

/* The feed socket's receive (below): a Receiver holds its socket, buffer and stats. */
typedef struct {
    PyObject_HEAD
    int fd;
    Py_buffer buf, st;
    long long host, port;
} Receiver;
static PyTypeObject ReceiverType;
static long recv_one(Receiver *r);

#define INITIAL_TABLE 1024

static inline uint64_t hash_key(uint64_t ref, uint32_t sid) {
    uint64_t x = ref ^ ((uint64_t)sid * 0x9E3779B97F4A7C15ull);
    x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ull;
    x ^= x >> 27; x *= 0x94D049BB133111EBull;
    x ^= x >> 31;
    return x;
}

static int64_t order_find(Books *b, uint64_t ref, uint32_t sid) {
    uint64_t i = hash_key(ref, sid) & b->mask;
    for (;;) {
        Order *o = &b->table[i];
        if (!o->used) return -1;
        if (o->ref == ref && o->sid == sid) return (int64_t)i;
        i = (i + 1) & b->mask;
    }
}

static void raw_put(Order *table, uint64_t mask, const Order *o) {
    uint64_t i = hash_key(o->ref, o->sid) & mask;
    while (table[i].used) i = (i + 1) & mask;
    table[i] = *o;
}

static int table_resize(Books *b, uint64_t cap) {
    Order *t = calloc(cap, sizeof(Order));
    if (!t) return -1;
    uint64_t old = b->mask + 1;
    for (uint64_t i = 0; i < old; i++)
        if (b->table[i].used) raw_put(t, cap - 1, &b->table[i]);
    free(b->table);
    b->memory += (cap - old) * sizeof(Order);
    b->table = t;
    b->mask = cap - 1;
    return 0;
}

/* 0 stored, -1 no memory (the caller refuses the order) */
static int order_put(Books *b, const Order *o) {
    if ((b->count + 1) * 10 > (b->mask + 1) * 7) {
        if (table_resize(b, (b->mask + 1) * 2) < 0) return -1;
    }
    raw_put(b->table, b->mask, o);
    b->count++;
    return 0;
}

/* backward-shift deletion: no tombstones, so a long day keeps its probe lengths */
static void order_del(Books *b, uint64_t i) {
    uint64_t mask = b->mask;
    Order *t = b->table;
    uint64_t j = i;
    for (;;) {
        j = (j + 1) & mask;
        if (!t[j].used) break;
        uint64_t home = hash_key(t[j].ref, t[j].sid) & mask;
        /* can t[j] move to the hole at i? yes unless its home lies cyclically in (i, j] */
        if ((j > i && (home <= i || home > j)) || (j < i && (home <= i && home > j))) {
            t[i] = t[j];
            i = j;
        }
    }
    t[i].used = 0;
    b->count--;
}

/* ---------------------------------------------------------------- levels */

static inline int better(uint32_t a, uint32_t b, int is_buy) { return is_buy ? a > b : a < b; }

/* Where price is (found=1) or goes: block *bi, index *ii; best first. */
static void lv_find(const Side *s, uint32_t price, int is_buy, uint32_t *bi, uint32_t *ii, int *found) {
    *found = 0;
    if (!s->nblk) { *bi = *ii = 0; return; }
    /* the last block whose first level is not worse than price */
    uint32_t lo = 0, hi = s->nblk;
    while (lo < hi) {
        uint32_t mid = (lo + hi) >> 1;
        uint32_t first = s->first[mid];          /* contiguous: no block touched until the right one */
        if (first == price || better(first, price, is_buy)) lo = mid + 1; else hi = mid;
    }
    uint32_t k = lo ? lo - 1 : 0;
    const Block *blk = s->blk[k];
    uint32_t l = 0, h = blk->n;
    while (l < h) {
        uint32_t mid = (l + h) >> 1;
        uint32_t p = blk->lv[mid].price;
        if (p == price) { *bi = k; *ii = mid; *found = 1; return; }
        if (better(p, price, is_buy)) l = mid + 1; else h = mid;
    }
    *bi = k;
    *ii = l;
}

/* the level's rank is below depth (it is in the published top) */
static inline int in_top(const Side *s, uint32_t bi, uint32_t ii) {
    uint32_t rank = ii;
    for (uint32_t k = 0; k < bi && rank < (uint32_t)depth; k++) rank += s->blk[k]->n;
    return rank < (uint32_t)depth;
}

static inline const Level *lv_at(const Side *s, uint32_t rank) {      /* rank < s->n; rank < depth in practice */
    for (uint32_t k = 0;; k++) {
        if (rank < s->blk[k]->n) return &s->blk[k]->lv[rank];
        rank -= s->blk[k]->n;
    }
}

static void side_free(Books *b, Side *s) {
    for (uint32_t k = 0; k < s->nblk; k++) free(s->blk[k]);
    b->memory -= (uint64_t)s->nblk * sizeof(Block);
    s->nblk = s->n = 0;
}

static void best_moved(Books *b, Book *k) {
    int64_t *c = (int64_t *)b->counters.buf;
    Side *bids = &k->side[1], *asks = &k->side[0];
    uint8_t crossed = 0, locked = 0;
    if (bids->n && asks->n) {
        uint32_t ask = asks->blk[0]->lv[0].price, bid = bids->blk[0]->lv[0].price;
        crossed = ask < bid;
        locked = ask == bid;
    }
    if (crossed != k->crossed) { k->crossed = crossed; if (crossed) c[counter_slot[CROSSED]]++; }
    if (locked != k->locked) { k->locked = locked; if (locked) c[counter_slot[LOCKED]]++; }
}

/* a new block at directory index at (0: no memory) */
static Block *block_new(Books *b, Side *s, uint32_t at) {
    if (s->nblk == s->cap) {
        uint32_t cap = s->cap ? s->cap * 2 : 4;
        Block **blk = realloc(s->blk, (size_t)cap * sizeof(Block *));
        if (!blk) return NULL;
        s->blk = blk;
        uint32_t *first = realloc(s->first, (size_t)cap * sizeof(uint32_t));
        if (!first) return NULL;
        s->first = first;
        b->memory += (uint64_t)(cap - s->cap) * (sizeof(Block *) + sizeof(uint32_t));
        s->cap = cap;
    }
    Block *nb = malloc(sizeof(Block));
    if (!nb) return NULL;
    nb->n = 0;
    b->memory += sizeof(Block);
    memmove(&s->blk[at + 1], &s->blk[at], (size_t)(s->nblk - at) * sizeof(Block *));
    memmove(&s->first[at + 1], &s->first[at], (size_t)(s->nblk - at) * sizeof(uint32_t));
    s->blk[at] = nb;
    s->first[at] = 0;                              /* set by the caller once the block holds a level */
    s->nblk++;
    return nb;
}

/* Add shares and orders (1: a new order, 0: a size change) at price.
 * 1: the top depth changed; 0: not; -1: no memory (nothing changed) */
static int lv_insert(Books *b, Book *k, int is_buy, uint32_t price, uint64_t shares, uint32_t orders) {
    Side *s = &k->side[is_buy];
    uint32_t bi, ii;
    int found;
    lv_find(s, price, is_buy, &bi, &ii, &found);
    if (found) {
        Level *l = &s->blk[bi]->lv[ii];
        l->qty += shares;
        l->orders += orders;
        return in_top(s, bi, ii);
    }
    if (!s->nblk && !block_new(b, s, 0)) return -1;
    Block *blk = s->blk[bi];
    if (blk->n == LEVEL_BLOCK) {                   /* split: the upper half to a new block after it */
        Block *next = block_new(b, s, bi + 1);
        if (!next) return -1;
        blk = s->blk[bi];
        uint32_t half = LEVEL_BLOCK / 2;
        memcpy(next->lv, &blk->lv[half], (LEVEL_BLOCK - half) * sizeof(Level));
        next->n = LEVEL_BLOCK - half;
        blk->n = half;
        s->first[bi + 1] = next->lv[0].price;
        if (ii > half) { bi++; ii -= half; blk = next; }
    }
    memmove(&blk->lv[ii + 1], &blk->lv[ii], (size_t)(blk->n - ii) * sizeof(Level));
    blk->lv[ii].price = price;
    blk->lv[ii].orders = orders;
    blk->lv[ii].qty = shares;
    blk->n++;
    s->n++;
    if (ii == 0) s->first[bi] = price;
    if (bi == 0 && ii == 0) { best_moved(b, k); return 1; }
    return in_top(s, bi, ii);
}

/* Take shares and orders (1: the order leaves, 0: it stays smaller) from price. */
static int lv_take(Books *b, Book *k, int is_buy, uint32_t price, uint64_t shares, uint32_t orders) {
    Side *s = &k->side[is_buy];
    uint32_t bi, ii;
    int found;
    lv_find(s, price, is_buy, &bi, &ii, &found);
    if (!found) return 0;              /* cannot happen: every order's shares are on its level */
    Block *blk = s->blk[bi];
    if (blk->lv[ii].qty > shares) {
        blk->lv[ii].qty -= shares;
        blk->lv[ii].orders -= orders;
        return in_top(s, bi, ii);
    }
    int top = in_top(s, bi, ii);
    memmove(&blk->lv[ii], &blk->lv[ii + 1], (size_t)(blk->n - ii - 1) * sizeof(Level));
    blk->n--;
    s->n--;
    if (!blk->n) {
        free(blk);
        b->memory -= sizeof(Block);
        memmove(&s->blk[bi], &s->blk[bi + 1], (size_t)(s->nblk - bi - 1) * sizeof(Block *));
        memmove(&s->first[bi], &s->first[bi + 1], (size_t)(s->nblk - bi - 1) * sizeof(uint32_t));
        s->nblk--;
    } else if (ii == 0) {
        s->first[bi] = blk->lv[0].price;
    }
    if (bi == 0 && ii == 0) { best_moved(b, k); return 1; }
    return top;
}

/* ---------------------------------------------------------------- book operations (book.py) */

static inline void book_error(Books *b, Book *k, int err, int slot, int latch) {
    ((int64_t *)b->counters.buf)[counter_slot[slot]]++;
    k->last_error = (uint8_t)err;
    if (latch) k->inconsistent = 1;
}

/* E, C, X on the order at table index i (order_find's answer: -1 unknown) */
static int book_reduce_at(Books *b, Book *k, int64_t i, uint64_t shares) {
    if (i < 0) { book_error(b, k, ERR_UNKNOWN_ORDER, UNKNOWN_ORDER, 1); return 0; }
    Order *o = &b->table[i];
    int changed;
    if ((uint64_t)o->shares > shares) {
        if (!shares) return 0;
        o->shares -= (uint32_t)shares;
        changed = lv_take(b, k, o->is_buy, o->price, shares, 0);
    } else {
        Order copy = *o;
        order_del(b, (uint64_t)i);
        k->order_count--;
        if ((uint64_t)copy.shares < shares) book_error(b, k, ERR_OVER_EXECUTION, OVER_EXECUTION, 1);
        changed = lv_take(b, k, copy.is_buy, copy.price, copy.shares, 1);
    }
    if (changed) k->update_sequence++;
    return changed;
}

static int book_add(Books *b, Book *k, uint32_t sid, uint64_t ref, int is_buy, uint32_t price, uint32_t shares) {
    if (order_find(b, ref, sid) >= 0) { book_error(b, k, ERR_DUPLICATE_ADD, DUPLICATE_ADD, 1); return 0; }
    if (!shares) { book_error(b, k, ERR_BAD_SHARES, BAD_SHARES, 0); return 0; }
    Order o = {ref, sid, price, shares, (uint8_t)is_buy, 1};
    if (order_put(b, &o) < 0) goto nomem;
    int r = lv_insert(b, k, is_buy, price, shares, 1);
    if (r < 0) { order_del(b, (uint64_t)order_find(b, ref, sid)); goto nomem; }
    k->order_count++;
    if (r) { k->update_sequence++; return 1; }
    return 0;
nomem:
    b->alloc_failures++;
    k->last_error = ERR_NO_MEMORY;
    k->inconsistent = 1;
    return 0;
}

static int book_delete(Books *b, Book *k, uint32_t sid, uint64_t ref) {
    int64_t i = order_find(b, ref, sid);
    if (i < 0) { book_error(b, k, ERR_UNKNOWN_ORDER, UNKNOWN_ORDER, 1); return 0; }
    Order copy = b->table[i];
    order_del(b, (uint64_t)i);
    k->order_count--;
    if (lv_take(b, k, copy.is_buy, copy.price, copy.shares, 1)) { k->update_sequence++; return 1; }
    return 0;
}

static int book_replace(Books *b, Book *k, uint32_t sid, uint64_t old_ref, uint64_t new_ref, uint32_t shares,
                        uint32_t price) {
    int64_t i = order_find(b, old_ref, sid);
    if (i < 0) { book_error(b, k, ERR_UNKNOWN_ORDER, UNKNOWN_ORDER, 1); return 0; }
    Order old = b->table[i];
    order_del(b, (uint64_t)i);
    k->order_count--;
    int changed;
    if (order_find(b, new_ref, sid) >= 0) {
        book_error(b, k, ERR_DUPLICATE_ADD, DUPLICATE_ADD, 1);
        changed = lv_take(b, k, old.is_buy, old.price, old.shares, 1);
    } else if (!shares) {
        book_error(b, k, ERR_BAD_SHARES, BAD_SHARES, 0);
        changed = lv_take(b, k, old.is_buy, old.price, old.shares, 1);
    } else {
        Order o = {new_ref, sid, price, shares, old.is_buy, 1};
        if (order_put(b, &o) < 0) {       /* no memory: the old order is gone, the new one refused */
            b->alloc_failures++;
            k->last_error = ERR_NO_MEMORY;
            k->inconsistent = 1;
            changed = lv_take(b, k, old.is_buy, old.price, old.shares, 1);
        } else {
            k->order_count++;
            if (price == old.price) {
                if (shares == old.shares) return 0;
                if (shares > old.shares)      /* same level, same order count: only its size moves */
                    changed = lv_insert(b, k, old.is_buy, price, shares - old.shares, 0);
                else
                    changed = lv_take(b, k, old.is_buy, price, old.shares - shares, 0);
            } else {
                int64_t *c = (int64_t *)b->counters.buf;
                uint8_t was_crossed = k->crossed, was_locked = k->locked;
                int64_t crossings = c[counter_slot[CROSSED]], locks = c[counter_slot[LOCKED]];
                changed = lv_take(b, k, old.is_buy, old.price, old.shares, 1);
                int r = lv_insert(b, k, old.is_buy, price, shares, 1);
                if (r < 0) {
                    order_del(b, (uint64_t)order_find(b, new_ref, sid));
                    k->order_count--;
                    b->alloc_failures++;
                    k->last_error = ERR_NO_MEMORY;
                    k->inconsistent = 1;
                    r = 0;
                }
                changed = r || changed;
                c[counter_slot[CROSSED]] = crossings + (k->crossed && !was_crossed);
                c[counter_slot[LOCKED]] = locks + (k->locked && !was_locked);
            }
        }
    }
    if (changed) k->update_sequence++;
    return changed;
}

/* a print: aggressor is the codes.Side byte of the taker (0 unknown) */
static inline void book_trade(Book *k, uint32_t price, uint64_t shares, uint8_t aggressor) {
    k->last_trade_price = price;
    k->last_trade_shares = shares;
    k->last_trade_aggressor = aggressor;
    k->last_trade_timestamp = k->last_timestamp;
    k->trades++;
}

static int sid_of_stock(Books *b, const uint8_t *stock) {
    for (int i = 0; i < b->nbooks; i++)
        if (!memcmp(b->books[i].symbol, stock, 8)) return i;
    return -1;
}

static int directory(Books *b, const uint8_t *p) {
    int64_t *c = (int64_t *)b->counters.buf;
    uint8_t *subscribed = (uint8_t *)b->subscribed.buf;
    uint32_t locate = (uint32_t)be(p, f_locate);
    int sid = sid_of_stock(b, p + fR_stock.off);
    int32_t holder = b->book_of_locate[locate];
    if (holder >= 0 && holder != sid) {
        b->books[holder].locate = -1;
        b->book_of_locate[locate] = -1;
        subscribed[locate] = 0;
    }
    if (sid < 0) { c[counter_slot[UNSUBSCRIBED_DIRECTORY]]++; return -1; }
    Book *k = &b->books[sid];
    k->last_timestamp = be(p, f_timestamp);
    int32_t old = k->locate;
    if (old != (int32_t)locate) {
        if (old >= 0) {
            c[counter_slot[DIRECTORY_CHANGES]]++;
            b->book_of_locate[old] = -1;
            subscribed[old] = 0;
        }
        k->locate = (int32_t)locate;
        b->book_of_locate[locate] = sid;
        subscribed[locate] = 1;
    }
    if (k->trading_state == ' ') { k->trading_state = 'T'; return sid; }
    return -1;
}

/* One whole, size-checked message (books.py BookSet.apply): the symbol id whose published state changed, else -1. */
static int apply_one(Books *b, const uint8_t *p) {
    int64_t *c = (int64_t *)b->counters.buf;
    uint8_t type = p[0];
    c[counter_slot[MESSAGES]]++;
    switch (type) {
    case 'S': c[counter_slot[SYSTEM_EVENTS]]++; b->system_event = p[fS_event.off]; return -1;
    case 'R': return directory(b, p);
    case 'B': c[counter_slot[BROKEN_TRADES]]++; return -1;
    case 'H': case 'A': case 'F': case 'E': case 'C': case 'X': case 'D': case 'U': case 'P': case 'Q': break;
    default: c[counter_slot[IGNORED]]++; return -1;
    }
    int32_t sid = b->book_of_locate[be(p, f_locate)];
    if (sid < 0) { c[counter_slot[UNSUBSCRIBED]]++; return -1; }
    Book *k = &b->books[sid];
    k->last_timestamp = be(p, f_timestamp);
    switch (type) {
    case 'H': {
        uint8_t state = p[fH_state.off];
        if (state != k->trading_state) { k->trading_state = state; return sid; }
        return -1;
    }
    case 'A':
        return book_add(b, k, sid, be(p, fA_ref), p[fA_side.off] == 'B', (uint32_t)be(p, fA_price),
                        (uint32_t)be(p, fA_shares)) ? sid : -1;
    case 'F':
        return book_add(b, k, sid, be(p, fF_ref), p[fF_side.off] == 'B', (uint32_t)be(p, fF_price),
                        (uint32_t)be(p, fF_shares)) ? sid : -1;
    case 'E': {
        uint64_t shares = be(p, fE_shares);
        int64_t i = order_find(b, be(p, fE_ref), sid);
        int traded = 0;
        if (i >= 0) { book_trade(k, b->table[i].price, shares, b->table[i].is_buy ? 'S' : 'B'); traded = 1; }
        return (book_reduce_at(b, k, i, shares) || traded) ? sid : -1;
    }
    case 'C': {
        int printable = p[fC_printable.off] == 'Y';
        uint64_t shares = be(p, fC_shares);
        int64_t i = order_find(b, be(p, fC_ref), sid);
        if (printable) book_trade(k, (uint32_t)be(p, fC_price), shares, i < 0 ? 0 : b->table[i].is_buy ? 'S' : 'B');
        return (book_reduce_at(b, k, i, shares) || printable) ? sid : -1;
    }
    case 'X': return book_reduce_at(b, k, order_find(b, be(p, fX_ref), sid), be(p, fX_shares)) ? sid : -1;
    case 'D': return book_delete(b, k, sid, be(p, fD_ref)) ? sid : -1;
    case 'U':
        return book_replace(b, k, sid, be(p, fU_old), be(p, fU_new), (uint32_t)be(p, fU_shares),
                            (uint32_t)be(p, fU_price)) ? sid : -1;
    case 'P': {      /* the indicator is the resting non-displayed order's side: the taker is the other */
        uint8_t side = p[fP_side.off];
        book_trade(k, (uint32_t)be(p, fP_price), be(p, fP_shares), side == 'B' ? 'S' : side == 'S' ? 'B' : 0);
        return sid;
    }
    default: {   /* 'Q' */
        uint64_t shares = be(p, fQ_shares);
        if (!shares) return -1;
        book_trade(k, (uint32_t)be(p, fQ_price), shares, 0);
        return sid;
    }
    }
}

/* ---------------------------------------------------------------- publishing (outputs.py) */

enum { TO_SLOT = 1, TO_RING = 2 };

static uint8_t flags_of(Books *b, Book *k) {
    uint8_t f = (b->feed_stale || k->locate < 0) ? FL_STALE : 0;
    if (k->crossed) f |= FL_CROSSED;
    if (k->locked) f |= FL_LOCKED;
    if (k->trading_state != 'T') f |= FL_HALTED;
    if (k->inconsistent) f |= FL_INCONSISTENT | FL_STALE;
    return f;
}

/* 1 written, 0 ring full (dropped), -1 a Python error from the ring */
static int publish(Books *b, int sid, uint64_t mold, uint64_t rx, uint32_t messages, int to) {
    Book *k = &b->books[sid];
    k->trades_published = k->trades;
    uint64_t bp[MAX_DEPTH], bs[MAX_DEPTH], ap[MAX_DEPTH], as[MAX_DEPTH];
    uint32_t bo[MAX_DEPTH], ao[MAX_DEPTH];
    uint32_t nb = k->side[1].n < (uint32_t)depth ? k->side[1].n : (uint32_t)depth;
    uint32_t na = k->side[0].n < (uint32_t)depth ? k->side[0].n : (uint32_t)depth;
    for (int i = 0; i < depth; i++) {
        if ((uint32_t)i < nb) { const Level *l = lv_at(&k->side[1], i); bp[i] = l->price; bs[i] = l->qty; bo[i] = l->orders; }
        else { bp[i] = bs[i] = 0; bo[i] = 0; }
        if ((uint32_t)i < na) { const Level *l = lv_at(&k->side[0], i); ap[i] = l->price; as[i] = l->qty; ao[i] = l->orders; }
        else { ap[i] = as[i] = 0; ao[i] = 0; }
        if (bo[i] > U16_MAX) bo[i] = U16_MAX;
        if (ao[i] > U16_MAX) ao[i] = U16_MAX;
        if (bs[i] > U32_MAX) bs[i] = U32_MAX;
        if (as[i] > U32_MAX) as[i] = U32_MAX;
    }
    uint64_t last_shares = k->last_trade_shares > U32_MAX ? U32_MAX : k->last_trade_shares;
    uint8_t flags = flags_of(b, k);
    uint8_t state = k->trading_state == ' ' ? 0 : k->trading_state;
    uint64_t t_exchange = (uint64_t)b->midnight_ns + k->last_timestamp;
    uint64_t t_out = b->event_clock ? rx : (uint64_t)now_ns();
    if ((to & TO_SLOT) && b->ms_offsets) {
        uint64_t bid = bp[0], ask = ap[0], last = k->last_trade_price, mark;
        if ((flags & FLAGS_BAD) || (bid && ask && bid > ask)) mark = 0;
        else if (bid && ask) mark = (bid + ask) >> 1;
        else mark = last;
        if (mark) b->marks[sid] = (uint32_t)mark; else mark = b->marks[sid];
        uint8_t *slot = (uint8_t *)b->ms_buf.buf + b->ms_offsets[sid];
        _Atomic uint64_t *seqp = (_Atomic uint64_t *)(slot + ms_seqlock.off);
        uint64_t seq = atomic_load_explicit(seqp, memory_order_relaxed);
        seq += seq & 1;                              /* a writer that died mid-write left it odd */
        atomic_store_explicit(seqp, seq + 1, memory_order_relaxed);
        atomic_thread_fence(memory_order_release);
        memcpy(slot + ms_symbol.off, k->symbol, 8);
        put(slot, ms_bid_price, bid); put(slot, ms_bid_shares, bs[0]);
        put(slot, ms_ask_price, ask); put(slot, ms_ask_shares, as[0]);
        put(slot, ms_last_price, last); put(slot, ms_last_shares, last_shares);
        put(slot, ms_flags, flags); put(slot, ms_state, state); put(slot, ms_pad0, 0);
        put(slot, ms_mark, mark); put(slot, ms_useq, k->update_sequence);
        put(slot, ms_t_exchange, t_exchange); put(slot, ms_t_update, t_out);
        atomic_store_explicit(seqp, seq + 2, memory_order_release);
    }
    if (!(to & TO_RING) || b->claim == Py_None) return 1;
    b->messages += messages;
    PyObject *r = PyObject_CallNoArgs(b->claim);
    if (!r) return -1;
    Py_ssize_t offset = PyLong_AsSsize_t(r);
    Py_DECREF(r);
    if (offset == -1 && PyErr_Occurred()) return -1;
    if (offset < 0) { b->dropped++; return 0; }
    if (offset + (Py_ssize_t)bu_record_size > b->ring_buf.len) {
        PyErr_SetString(PyExc_ValueError, "ring slot outside the ring buffer");
        return -1;
    }
    uint8_t *rec = (uint8_t *)b->ring_buf.buf + offset;
    put(rec, bu_type, bu_type_id); put(rec, bu_version, bu_version_id); put(rec, bu_size, bu_record_size);
    put(rec, bu_sid, (uint64_t)sid); put(rec, bu_flags, flags); put(rec, bu_state, state);
    put(rec, bu_bid_levels, nb); put(rec, bu_ask_levels, na);
    for (int i = 0; i < depth; i++) {
        put(rec, bu_bid_price[i], bp[i]); put(rec, bu_bid_shares[i], bs[i]);
        put(rec, bu_ask_price[i], ap[i]); put(rec, bu_ask_shares[i], as[i]);
        put(rec, bu_bid_orders[i], bo[i]); put(rec, bu_ask_orders[i], ao[i]);
    }
    put(rec, bu_trade_seq, k->trades); put(rec, bu_aggressor, k->last_trade_aggressor);
    put(rec, bu_trade_t, (uint64_t)b->midnight_ns + k->last_trade_timestamp);
    put(rec, bu_last_price, k->last_trade_price); put(rec, bu_last_shares, last_shares);
    put(rec, bu_useq, k->update_sequence); put(rec, bu_mold, mold); put(rec, bu_t_exchange, t_exchange);
    put(rec, bu_t_rx, rx); put(rec, bu_t_out, t_out); put(rec, bu_count, messages);
    r = PyObject_CallNoArgs(b->commit);
    if (!r) return -1;
    Py_DECREF(r);
    b->published++;
    return 1;
}

/* ---------------------------------------------------------------- the Books type */

static void free_state(Books *b) {
    if (b->books)
        for (int i = 0; i < b->nbooks; i++)
            for (int j = 0; j < 2; j++) {
                Side *sd = &b->books[i].side[j];
                for (uint32_t k = 0; k < sd->nblk; k++) free(sd->blk[k]);
                free(sd->blk);
                free(sd->first);
            }
    free(b->books); b->books = NULL;
    free(b->book_of_locate); b->book_of_locate = NULL;
    free(b->table); b->table = NULL;
    free(b->ms_offsets); b->ms_offsets = NULL;
    free(b->marks); b->marks = NULL;
    free(b->touched); b->touched = NULL;
}

static void Books_dealloc(Books *b) {
    free_state(b);
    if (b->counters.obj) PyBuffer_Release(&b->counters);
    if (b->scan_counters.obj) PyBuffer_Release(&b->scan_counters);
    if (b->subscribed.obj) PyBuffer_Release(&b->subscribed);
    if (b->ring_buf.obj) PyBuffer_Release(&b->ring_buf);
    if (b->ms_buf.obj) PyBuffer_Release(&b->ms_buf);
    Py_XDECREF(b->claim);
    Py_XDECREF(b->commit);
    Py_XDECREF(b->seq);
    Py_XDECREF(b->live_rx);
    Py_XDECREF(b->seq_type);
    Py_TYPE(b)->tp_free((PyObject *)b);
}

static int get_counters(PyObject *o, Py_buffer *view, Py_ssize_t n, const char *what) {
    if (PyObject_GetBuffer(o, view, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) return -1;
    if (view->itemsize != 8 || !view->format || (strcmp(view->format, "q") && strcmp(view->format, "l")) ||
        view->len < n * 8) {
        PyErr_Format(PyExc_ValueError, "%s must be a writable array('q') of at least %zd items", what, n);
        return -1;
    }
    return 0;
}

/* Books(symbols, counters, scan_counters, subscribed, ring_buffer, claim, commit, ms_buffer, ms_offsets, marks, midnight_ns) */
static int Books_init(Books *b, PyObject *args, PyObject *kw) {
    PyObject *symbols, *counters, *scan_counters, *subscribed, *ring_buffer, *claim, *commit, *ms_buffer, *ms_offsets,
        *marks;
    long long midnight;
    if (!PyArg_ParseTuple(args, "OOOOOOOOOOL:Books", &symbols, &counters, &scan_counters, &subscribed, &ring_buffer,
                          &claim, &commit, &ms_buffer, &ms_offsets, &marks, &midnight))
        return -1;
    if (!configured) { PyErr_SetString(PyExc_RuntimeError, "configure() was not called"); return -1; }
    if (b->books) { PyErr_SetString(PyExc_RuntimeError, "Books is initialised once"); return -1; }
    PyObject *syms = PySequence_Fast(symbols, "symbols must be a sequence of 8-byte padded bytes");
    if (!syms) return -1;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(syms);
    if (n < 1 || n > 1000000) { Py_DECREF(syms); PyErr_SetString(PyExc_ValueError, "bad symbol count"); return -1; }
    b->nbooks = (int)n;
    b->books = calloc((size_t)n, sizeof(Book));
    b->book_of_locate = malloc(LOCATES * sizeof(int32_t));
    b->table = calloc(INITIAL_TABLE, sizeof(Order));
    b->touched = malloc((size_t)n * sizeof(int32_t));
    b->marks = calloc((size_t)n, sizeof(uint32_t));
    if (!b->books || !b->book_of_locate || !b->table || !b->touched || !b->marks) { Py_DECREF(syms); PyErr_NoMemory(); return -1; }
    b->mask = INITIAL_TABLE - 1;
    b->memory = (uint64_t)n * sizeof(Book) + LOCATES * sizeof(int32_t) + INITIAL_TABLE * sizeof(Order);
    for (int i = 0; i < LOCATES; i++) b->book_of_locate[i] = -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *s = PySequence_Fast_GET_ITEM(syms, i);
        if (!PyBytes_Check(s) || PyBytes_GET_SIZE(s) != 8) { Py_DECREF(syms); PyErr_SetString(PyExc_ValueError, "each symbol: 8 bytes"); return -1; }
        memcpy(b->books[i].symbol, PyBytes_AS_STRING(s), 8);
        b->books[i].locate = -1;
        b->books[i].trading_state = ' ';
    }
    Py_DECREF(syms);
    if (get_counters(counters, &b->counters, counters_needed, "counters") < 0) return -1;
    if (get_counters(scan_counters, &b->scan_counters, 3, "scan_counters") < 0) return -1;
    if (PyObject_GetBuffer(subscribed, &b->subscribed, PyBUF_WRITABLE) < 0) return -1;
    if (b->subscribed.len != LOCATES) { PyErr_SetString(PyExc_ValueError, "subscribed must be 65536 bytes"); return -1; }
    Py_INCREF(claim); b->claim = claim;
    Py_INCREF(commit); b->commit = commit;
    if (claim != Py_None) {
        if (!PyCallable_Check(claim) || !PyCallable_Check(commit)) { PyErr_SetString(PyExc_TypeError, "claim/commit must be callable"); return -1; }
        if (PyObject_GetBuffer(ring_buffer, &b->ring_buf, PyBUF_WRITABLE) < 0) return -1;
    }
    if (ms_buffer != Py_None) {
        if (PyObject_GetBuffer(ms_buffer, &b->ms_buf, PyBUF_WRITABLE) < 0) return -1;
        PyObject *offs = PySequence_Fast(ms_offsets, "ms_offsets must be a sequence");
        PyObject *mk = offs ? PySequence_Fast(marks, "marks must be a sequence") : NULL;
        if (!mk) { Py_XDECREF(offs); return -1; }
        if (PySequence_Fast_GET_SIZE(offs) < n || PySequence_Fast_GET_SIZE(mk) < n) {
            Py_DECREF(offs); Py_DECREF(mk);
            PyErr_SetString(PyExc_ValueError, "a market-state slot and mark per symbol");
            return -1;
        }
        b->ms_offsets = malloc((size_t)n * sizeof(Py_ssize_t));
        if (!b->ms_offsets) { Py_DECREF(offs); Py_DECREF(mk); PyErr_NoMemory(); return -1; }
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_ssize_t o = PyLong_AsSsize_t(PySequence_Fast_GET_ITEM(offs, i));
            long long m = PyLong_AsLongLong(PySequence_Fast_GET_ITEM(mk, i));
            if (PyErr_Occurred()) { Py_DECREF(offs); Py_DECREF(mk); return -1; }
            if (o < 0 || o % 8 || o + ms_t_update.off + 8 > b->ms_buf.len || o + ms_seqlock.off + 8 > b->ms_buf.len) {
                Py_DECREF(offs); Py_DECREF(mk);
                PyErr_SetString(PyExc_ValueError, "market-state slot outside the buffer");
                return -1;
            }
            b->ms_offsets[i] = o;
            b->marks[i] = (uint32_t)m;
        }
        Py_DECREF(offs); Py_DECREF(mk);
    }
    b->midnight_ns = midnight;
    b->feed_stale = 1;
    b->event_clock = 0;
    b->system_event = ' ';
    return 0;
}

static int check_sid(Books *b, long sid) {
    if (sid < 0 || sid >= b->nbooks) { PyErr_Format(PyExc_IndexError, "symbol id %ld out of range", sid); return -1; }
    return 0;
}

/* One packet's blocks from start to end: decode, apply, publish (BookUpdates coalesced per packet). The updates put
 * on the ring (or dropped), -1 with a Python error from the ring. */
static long apply_range(Books *b, const uint8_t *buf, Py_ssize_t start, Py_ssize_t end, uint64_t mold, uint64_t rx) {
    const uint8_t *sub = b->subscribed.buf;
    int64_t *sc = (int64_t *)b->scan_counters.buf;
    long updates = 0;
    Py_ssize_t offset = start;
    while (offset + 2 <= end) {
        Py_ssize_t length = (buf[offset] << 8) | buf[offset + 1];
        Py_ssize_t body = offset + 2;
        if (body + length > end) break;
        if (length == 0) { sc[sc_malformed]++; offset = body; continue; }
        const uint8_t *p = buf + body;
        uint8_t type = p[0];
        offset = body + length;
        if (type_size[type] != length) { sc[sc_malformed]++; continue; }
        if (type != 'S' && type != 'R' && type != 'V' && type != 'W' && !sub[(p[1] << 8) | p[2]]) {
            sc[sc_filtered]++;
            continue;
        }
        sc[sc_decoded]++;
        if (print_type[type]) {
            int32_t s = b->book_of_locate[(p[1] << 8) | p[2]];
            if (s >= 0) {
                Book *k = &b->books[s];
                if (k->pending > 1 && k->trades != k->trades_published) {
                    if (publish(b, s, mold, rx, k->pending - 1, TO_RING) < 0) goto error;
                    k->pending = 1;
                    updates++;
                }
            }
        }
        int sid = apply_one(b, p);
        if (sid >= 0) {
            Book *k = &b->books[sid];
            if (!k->pending) { b->touched[b->ntouched++] = sid; k->pending = 1; }
            k->pending++;
        }
    }
    if (offset < end) sc[sc_malformed]++;
    for (int i = 0; i < b->ntouched; i++) {
        int sid = b->touched[i];
        Book *k = &b->books[sid];
        uint32_t n = k->pending - 1;
        k->pending = 0;
        int r = publish(b, sid, mold, rx, n, n ? TO_SLOT | TO_RING : TO_SLOT);
        if (r < 0) goto error;
        if (n) updates++;
    }
    b->ntouched = 0;
    return updates;
error:
    for (int j = 0; j < b->ntouched; j++) b->books[b->touched[j]].pending = 0;
    b->ntouched = 0;
    return -1;
}

/* apply_packet(buffer, start, end, mold_sequence, t_rx_ns) -> updates put on the ring (or dropped) */
static PyObject *Books_apply_packet(Books *b, PyObject *args) {
    Py_buffer data;
    Py_ssize_t start, end;
    unsigned long long mold, rx;
    if (!PyArg_ParseTuple(args, "y*nnKK:apply_packet", &data, &start, &end, &mold, &rx)) return NULL;
    if (start < 0 || end < start || end > data.len) {
        PyBuffer_Release(&data);
        return PyErr_Format(PyExc_ValueError, "bad range %zd:%zd of a %zd-byte buffer", start, end, data.len);
    }
    long updates = apply_range(b, data.buf, start, end, mold, rx);
    PyBuffer_Release(&data);
    return updates < 0 ? NULL : PyLong_FromLong(updates);
}


/* ---------------------------------------------------------------- the sequencer's in-order accept (sequencer.py)

 * MoldSequencer.accept's common case, a packet that is the next expected one with no gap open, followed by its
 * apply_packet, in one call. Everything else (heartbeats, gaps, duplicates, other sessions, bad packets, anything
 * held) returns -1 having changed nothing, and the caller runs the Python sequencer, which stays the reference
 * (tests/feed/test_feed_in_order_diff.py: same books, updates, slots and sequencer state).
 *
 * The sequencer's state stays in its Python slots: bind_sequencer takes each slot's offset from the class's
 * member descriptors, so this reads and writes exactly what accept does, and nothing else holds a copy. */
enum { SQ_SESSION, SQ_NEXT, SQ_HIGH, SQ_PENDING, SQ_PROGRESS, SQ_PACKETS, SQ_NOW, SQ_FROM_LIVE, SQ_LAST_LIVE,
       SQ_DELIVERED, SQ_MESSAGES, SQ_PAYLOAD, N_SQ };
static const char *seq_slot_names[N_SQ] = {"session", "next_expected", "_high_water", "_pending", "_progress",
    "packets", "_now_ns", "_from_live", "last_live_ns", "delivered_packets", "messages_delivered", "payload_offset"};
static Field mh_session, mh_sequence, mh_count;     /* the MoldUDP64 header (wire/moldudp64.py HEADER) */
static Py_ssize_t mh_size;
static uint64_t mh_heartbeat, mh_end_of_session;

/* bind_sequencer(sequencer, header_fields, header_size, (heartbeat_count, end_of_session_count)[, live_receiver]) */
static PyObject *Books_bind_sequencer(Books *b, PyObject *args) {
    PyObject *seq, *header, *receiver = Py_None;
    Py_ssize_t size;
    unsigned long long heartbeat, end_of_session;
    if (!PyArg_ParseTuple(args, "OOn(KK)|O:bind_sequencer", &seq, &header, &size, &heartbeat, &end_of_session,
                          &receiver))
        return NULL;
    if (receiver != Py_None && !Py_IS_TYPE(receiver, &ReceiverType))
        return PyErr_Format(PyExc_TypeError, "the live receiver must be a Receiver (or None)");
    Field fs, fq, fc;
    if (rec_field(header, "session", 10, &fs, "MoldUDP64 header") < 0 ||
        rec_field(header, "sequence_number", 8, &fq, "MoldUDP64 header") < 0 ||
        rec_field(header, "message_count", 2, &fc, "MoldUDP64 header") < 0)
        return NULL;
    if (size < 20 || fs.off + 10 > size || fq.off + 8 > size || fc.off + 2 > size)
        return PyErr_Format(PyExc_ValueError, "MoldUDP64 header fields outside its %zd bytes", size);
    PyTypeObject *type = Py_TYPE(seq);
    Py_ssize_t off[N_SQ];
    for (int i = 0; i < N_SQ; i++) {
        PyObject *d = PyObject_GetAttrString((PyObject *)type, seq_slot_names[i]);
        if (!d) return NULL;
        int ok = Py_IS_TYPE(d, &PyMemberDescr_Type) && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX &&
                 !(((PyMemberDescrObject *)d)->d_member->flags & READONLY);
        if (ok) off[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        Py_DECREF(d);
        if (!ok) return PyErr_Format(PyExc_TypeError, "%s.%s is not a writable slot", type->tp_name, seq_slot_names[i]);
    }
    mh_session = fs; mh_sequence = fq; mh_count = fc; mh_size = size;
    mh_heartbeat = heartbeat; mh_end_of_session = end_of_session;
    memcpy(b->seq_off, off, sizeof off);
    Py_INCREF(seq);
    Py_XSETREF(b->seq, seq);
    Py_INCREF(type);
    Py_XSETREF(b->seq_type, type);
    Py_XSETREF(b->live_rx, receiver == Py_None ? NULL : Py_NewRef(receiver));
    Py_RETURN_NONE;
}

#define SEQ_SLOT(b, i) ((PyObject **)((char *)(b)->seq + (b)->seq_off[i]))

static inline int slot_int(Books *b, int i, long long *out) {      /* 0: an int that fits, -1: anything else */
    PyObject *v = *SEQ_SLOT(b, i);
    if (!v || !PyLong_CheckExact(v)) return -1;
    int overflow;
    *out = PyLong_AsLongLongAndOverflow(v, &overflow);
    return overflow || (*out == -1 && PyErr_Occurred()) ? (PyErr_Clear(), -1) : 0;
}

static inline void slot_set(Books *b, int i, PyObject *v) {         /* steals v */
    PyObject **p = SEQ_SLOT(b, i);
    PyObject *old = *p;
    *p = v;
    Py_XDECREF(old);
}

/* MoldSequencer.accept + apply_packet of the packet in buf[:nbytes] when it is the next expected one with no gap
 * open: the updates (>= 0); -1: declined, nothing changed; -2: a Python error. */
static long in_order(Books *b, const uint8_t *buf, Py_ssize_t buflen, Py_ssize_t nbytes, uint64_t rx, int live,
                     long long now) {
    long long next, high, packets, delivered, messages;
    PyObject *session = Py_TYPE(b->seq) == b->seq_type ? *SEQ_SLOT(b, SQ_SESSION) : NULL;
    PyObject *pending = session ? *SEQ_SLOT(b, SQ_PENDING) : NULL;
    if (!session || !pending || nbytes < mh_size || nbytes > buflen || !PyBytes_CheckExact(session) ||
        PyBytes_GET_SIZE(session) != 10 || memcmp(PyBytes_AS_STRING(session), buf + mh_session.off, 10) ||
        !PyDict_CheckExact(pending) || PyDict_GET_SIZE(pending) || *SEQ_SLOT(b, SQ_PROGRESS) != Py_False ||
        slot_int(b, SQ_NEXT, &next) || slot_int(b, SQ_HIGH, &high) || next != high || next < 1 ||
        slot_int(b, SQ_PACKETS, &packets) || slot_int(b, SQ_DELIVERED, &delivered) ||
        slot_int(b, SQ_MESSAGES, &messages) || packets == LLONG_MAX || delivered == LLONG_MAX)
        return -1;
    uint64_t sequence = be(buf, mh_sequence), count = be(buf, mh_count);
    if (sequence != (uint64_t)next || count == mh_heartbeat || count == mh_end_of_session ||
        (uint64_t)next + count > (uint64_t)LLONG_MAX || (uint64_t)messages + count > (uint64_t)LLONG_MAX)
        return -1;
    Py_ssize_t offset = mh_size, last = nbytes - 2;       /* the blocks must fill the packet exactly */
    for (uint64_t i = 0; i < count; i++) {
        if (offset > last) return -1;
        offset += 2 + ((buf[offset] << 8) | buf[offset + 1]);
    }
    if (offset != nbytes) return -1;
    /* accept's in-order delivery: every slot it writes, then apply_packet from the first block */
    long long end = next + (long long)count;
    PyObject *v[7] = {PyLong_FromLongLong(packets + 1), PyLong_FromLongLong(now), PyLong_FromLongLong(end),
                      PyLong_FromLongLong(end), PyLong_FromLongLong(delivered + 1),
                      PyLong_FromLongLong(messages + (long long)count), PyLong_FromSsize_t(mh_size)};
    for (int i = 0; i < 7; i++)
        if (!v[i]) { for (int j = 0; j < 7; j++) Py_XDECREF(v[j]); return -2; }
    slot_set(b, SQ_PACKETS, v[0]);
    Py_INCREF(v[1]);
    slot_set(b, SQ_NOW, v[1]);
    slot_set(b, SQ_LAST_LIVE, v[1]);
    slot_set(b, SQ_FROM_LIVE, Py_NewRef(live ? Py_True : Py_False));
    slot_set(b, SQ_NEXT, v[2]);
    slot_set(b, SQ_HIGH, v[3]);
    slot_set(b, SQ_DELIVERED, v[4]);
    slot_set(b, SQ_MESSAGES, v[5]);
    slot_set(b, SQ_PAYLOAD, v[6]);
    long updates = apply_range(b, buf, mh_size, nbytes, (uint64_t)end - 1, rx);
    return updates < 0 ? -2 : updates;
}

/* accept_packet(buffer, nbytes, rx_ns, live[, now_ns]) -> updates (MoldSequencer.accept returned 0 and the packet
 * was applied), or -1: not the in-order case, nothing changed, run MoldSequencer.accept. now_ns: time.monotonic_ns()
 * when left out. */
static PyObject *Books_accept_packet(Books *b, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs < 4 || nargs > 5) return PyErr_Format(PyExc_TypeError, "accept_packet takes 4 or 5 arguments");
    if (!b->seq) { PyErr_SetString(PyExc_RuntimeError, "bind_sequencer() was not called"); return NULL; }
    Py_ssize_t nbytes = PyLong_AsSsize_t(args[1]);
    if (nbytes == -1 && PyErr_Occurred()) return NULL;
    unsigned long long rx = PyLong_AsUnsignedLongLongMask(args[2]);
    if (rx == (unsigned long long)-1 && PyErr_Occurred()) return NULL;
    int live = PyObject_IsTrue(args[3]);
    if (live < 0) return NULL;
    long long now;
    if (nargs == 5) {
        now = PyLong_AsLongLong(args[4]);
        if (now == -1 && PyErr_Occurred()) return NULL;
    } else {
        now = monotonic_ns();
    }
    Py_buffer data;
    if (PyObject_GetBuffer(args[0], &data, PyBUF_SIMPLE) < 0) return NULL;
    long r = in_order(b, data.buf, data.len, nbytes, rx, live, now);
    PyBuffer_Release(&data);
    return r == -2 ? NULL : PyLong_FromLong(r);
}

/* receive_in_order() -> -2: a datagram was received from the bound live Receiver and taken by in_order (sequenced,
 * applied, published); n >= 0: a datagram of n bytes is in the receiver's buffer for the Python path (the
 * sequencer declined it: nothing changed); -1: nothing waiting. The receive and the accept in one call. */
static PyObject *Books_receive_in_order(Books *b, PyObject *unused) {
    Receiver *r = (Receiver *)b->live_rx;
    if (!b->seq || !r) { PyErr_SetString(PyExc_RuntimeError, "bind_sequencer() was given no live receiver"); return NULL; }
    long n = recv_one(r);
    if (n == -2) return NULL;
    if (n < 0) return PyLong_FromLong(-1);
    long u = in_order(b, r->buf.buf, r->buf.len, n, (uint64_t)((int64_t *)r->st.buf)[0], 1, monotonic_ns());
    if (u == -2) return NULL;
    return PyLong_FromLong(u >= 0 ? -2 : n);
}

/* apply_message(message) -> sid or -1: one whole ITCH message (a snapshot's, a replayed one); None if it is not one */
static PyObject *Books_apply_message(Books *b, PyObject *arg) {
    Py_buffer data;
    if (PyObject_GetBuffer(arg, &data, PyBUF_SIMPLE) < 0) return NULL;
    const uint8_t *p = data.buf;
    if (data.len < 1 || type_size[p[0]] != data.len) { PyBuffer_Release(&data); Py_RETURN_NONE; }
    int sid = apply_one(b, p);
    PyBuffer_Release(&data);
    return PyLong_FromLong(sid);
}

static PyObject *Books_publish(Books *b, PyObject *args) {
    long sid;
    unsigned long long mold, rx;
    unsigned long messages;
    int to;
    if (!PyArg_ParseTuple(args, "lKKki:publish", &sid, &mold, &rx, &messages, &to)) return NULL;
    if (check_sid(b, sid) < 0) return NULL;
    int r = publish(b, (int)sid, mold, rx, (uint32_t)messages, to);
    if (r < 0) return NULL;
    return PyBool_FromLong(r);
}

static void reset_book(Books *b, int sid) {
    Book *k = &b->books[sid];
    if (k->order_count) {     /* rebuild the table without this book's orders (rare: a recovery) */
        uint64_t cap = b->mask + 1;
        for (uint64_t i = 0; i < cap; ) {
            if (b->table[i].used && b->table[i].sid == (uint32_t)sid) { order_del(b, i); continue; }   /* slot i refilled */
            i++;
        }
    }
    k->order_count = 0;
    side_free(b, &k->side[0]);
    side_free(b, &k->side[1]);
    k->crossed = k->locked = k->inconsistent = 0;
    k->last_error = ERR_NONE;
    k->update_sequence++;
}

static PyObject *Books_reset(Books *b, PyObject *arg) {
    long sid = PyLong_AsLong(arg);
    if (sid == -1 && PyErr_Occurred()) return NULL;
    if (check_sid(b, sid) < 0) return NULL;
    reset_book(b, (int)sid);
    Py_RETURN_NONE;
}

/* clear(): books.py BookSet.clear */
static PyObject *Books_clear(Books *b, PyObject *unused) {
    uint8_t *subscribed = b->subscribed.buf;
    for (int sid = 0; sid < b->nbooks; sid++) {
        Book *k = &b->books[sid];
        if (k->locate >= 0) {
            b->book_of_locate[k->locate] = -1;
            subscribed[k->locate] = 0;
            k->locate = -1;
        }
        reset_book(b, sid);
        k->trading_state = ' ';
        k->last_trade_price = 0;
        k->last_trade_shares = 0;
        k->last_trade_aggressor = 0;
        k->last_trade_timestamp = 0;
        k->last_timestamp = 0;
    }
    b->system_event = ' ';
    Py_RETURN_NONE;
}

static const char *error_names[] = {NULL, "unknown_order", "over_execution", "duplicate_add", "bad_shares", "no_memory",
                                    "rebuilding"};

/* state(sid) -> (locate|None, crossed, locked, inconsistent, last_error|None, trading_state, last_trade_price,
 *                last_trade_shares, trades, last_timestamp, update_sequence, order_count, last_trade_aggressor,
 *                last_trade_timestamp) */
static PyObject *Books_state(Books *b, PyObject *arg) {
    long sid = PyLong_AsLong(arg);
    if (sid == -1 && PyErr_Occurred()) return NULL;
    if (check_sid(b, sid) < 0) return NULL;
    Book *k = &b->books[sid];
    PyObject *locate = k->locate >= 0 ? PyLong_FromLong(k->locate) : (Py_INCREF(Py_None), Py_None);
    PyObject *err = k->last_error ? PyUnicode_InternFromString(error_names[k->last_error]) : (Py_INCREF(Py_None), Py_None);
    char state = (char)k->trading_state;
    return Py_BuildValue("(NNNNNy#kKKKKKiK)", locate, PyBool_FromLong(k->crossed), PyBool_FromLong(k->locked),
                         PyBool_FromLong(k->inconsistent), err, &state, (Py_ssize_t)1, (unsigned long)k->last_trade_price,
                         (unsigned long long)k->last_trade_shares, (unsigned long long)k->trades,
                         (unsigned long long)k->last_timestamp, (unsigned long long)k->update_sequence,
                         (unsigned long long)k->order_count, (int)k->last_trade_aggressor,
                         (unsigned long long)k->last_trade_timestamp);
}

/* set_inconsistent(sid, flag, error_name|None): the agent's isolation ("rebuilding") */
static PyObject *Books_set_inconsistent(Books *b, PyObject *args) {
    long sid;
    int flag;
    const char *err = NULL;
    if (!PyArg_ParseTuple(args, "lpz:set_inconsistent", &sid, &flag, &err)) return NULL;
    if (check_sid(b, sid) < 0) return NULL;
    Book *k = &b->books[sid];
    k->inconsistent = (uint8_t)flag;
    k->last_error = ERR_NONE;
    if (err) {
        k->last_error = ERR_OTHER;
        for (int i = 1; i < ERR_OTHER; i++) if (!strcmp(err, error_names[i])) k->last_error = (uint8_t)i;
    }
    Py_RETURN_NONE;
}

static PyObject *Books_levels(Books *b, PyObject *args) {
    long sid;
    int is_buy;
    if (!PyArg_ParseTuple(args, "lp:levels", &sid, &is_buy)) return NULL;
    if (check_sid(b, sid) < 0) return NULL;
    Side *s = &b->books[sid].side[is_buy];
    PyObject *list = PyList_New(s->n);
    if (!list) return NULL;
    uint32_t i = 0;
    for (uint32_t k = 0; k < s->nblk; k++)
        for (uint32_t j = 0; j < s->blk[k]->n; j++, i++) {
            const Level *l = &s->blk[k]->lv[j];
            PyObject *t = Py_BuildValue("(kK)", (unsigned long)l->price, (unsigned long long)l->qty);
            if (!t) { Py_DECREF(list); return NULL; }
            PyList_SET_ITEM(list, i, t);
        }
    return list;
}

/* order_counts(sid, is_buy) -> [orders at each level] best first (book.py order_counts) */
static PyObject *Books_order_counts(Books *b, PyObject *args) {
    long sid;
    int is_buy;
    if (!PyArg_ParseTuple(args, "lp:order_counts", &sid, &is_buy)) return NULL;
    if (check_sid(b, sid) < 0) return NULL;
    Side *s = &b->books[sid].side[is_buy];
    PyObject *list = PyList_New(s->n);
    if (!list) return NULL;
    uint32_t i = 0;
    for (uint32_t k = 0; k < s->nblk; k++)
        for (uint32_t j = 0; j < s->blk[k]->n; j++, i++) {
            PyObject *v = PyLong_FromUnsignedLong(s->blk[k]->lv[j].orders);
            if (!v) { Py_DECREF(list); return NULL; }
            PyList_SET_ITEM(list, i, v);
        }
    return list;
}

/* orders(sid) -> {ref: (side byte, price, shares)} (tools, tests, the book dump) */
static PyObject *Books_orders(Books *b, PyObject *arg) {
    long sid = PyLong_AsLong(arg);
    if (sid == -1 && PyErr_Occurred()) return NULL;
    if (check_sid(b, sid) < 0) return NULL;
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    for (uint64_t i = 0; i <= b->mask; i++) {
        Order *o = &b->table[i];
        if (!o->used || o->sid != (uint32_t)sid) continue;
        PyObject *k = PyLong_FromUnsignedLongLong(o->ref);
        PyObject *v = Py_BuildValue("(y#kk)", o->is_buy ? "B" : "S", (Py_ssize_t)1, (unsigned long)o->price,
                                    (unsigned long)o->shares);
        if (!k || !v || PyDict_SetItem(d, k, v) < 0) { Py_XDECREF(k); Py_XDECREF(v); Py_DECREF(d); return NULL; }
        Py_DECREF(k); Py_DECREF(v);
    }
    return d;
}

/* flagged() -> [sid, ...] of the books inconsistent or crossed (the agent's per-millisecond book checks) */
static PyObject *Books_flagged(Books *b, PyObject *unused) {
    PyObject *list = PyList_New(0);
    if (!list) return NULL;
    for (int i = 0; i < b->nbooks; i++) {
        if (!b->books[i].inconsistent && !b->books[i].crossed) continue;
        PyObject *v = PyLong_FromLong(i);
        if (!v || PyList_Append(list, v) < 0) { Py_XDECREF(v); Py_DECREF(list); return NULL; }
        Py_DECREF(v);
    }
    return list;
}

static PyObject *Books_sid_of_locate(Books *b, PyObject *arg) {
    long locate = PyLong_AsLong(arg);
    if (locate == -1 && PyErr_Occurred()) return NULL;
    if (locate < 0 || locate >= LOCATES) return PyErr_Format(PyExc_IndexError, "locate %ld out of range", locate);
    return PyLong_FromLong(b->book_of_locate[locate]);
}

static PyObject *Books_get_stats(Books *b, void *unused) {
    return Py_BuildValue("{sKsKsKsKsKsKsi}", "published", (unsigned long long)b->published, "dropped",
                         (unsigned long long)b->dropped, "messages", (unsigned long long)b->messages, "order_count",
                         (unsigned long long)b->count, "memory_bytes", (unsigned long long)b->memory,
                         "alloc_failures", (unsigned long long)b->alloc_failures, "system_event", (int)b->system_event);
}

static PyObject *Books_get_feed_stale(Books *b, void *unused) { return PyBool_FromLong(b->feed_stale); }
static int Books_set_feed_stale(Books *b, PyObject *v, void *unused) {
    if (!v) { PyErr_SetString(PyExc_AttributeError, "cannot delete"); return -1; }
    int t = PyObject_IsTrue(v);
    if (t < 0) return -1;
    b->feed_stale = t;
    return 0;
}
static PyObject *Books_get_event_clock(Books *b, void *unused) { return PyBool_FromLong(b->event_clock); }
static int Books_set_event_clock(Books *b, PyObject *v, void *unused) {
    if (!v) { PyErr_SetString(PyExc_AttributeError, "cannot delete"); return -1; }
    int t = PyObject_IsTrue(v);
    if (t < 0) return -1;
    b->event_clock = t;
    return 0;
}
static PyObject *Books_get_midnight(Books *b, void *unused) { return PyLong_FromLongLong(b->midnight_ns); }
static int Books_set_midnight(Books *b, PyObject *v, void *unused) {
    if (!v) { PyErr_SetString(PyExc_AttributeError, "cannot delete"); return -1; }
    long long m = PyLong_AsLongLong(v);
    if (m == -1 && PyErr_Occurred()) return -1;
    b->midnight_ns = m;
    return 0;
}
static PyObject *Books_get_marks(Books *b, void *unused) {
    PyObject *list = PyList_New(b->nbooks);
    if (!list) return NULL;
    for (int i = 0; i < b->nbooks; i++) PyList_SET_ITEM(list, i, PyLong_FromUnsignedLong(b->marks[i]));
    return list;
}

static PyGetSetDef Books_getset[] = {
    {"stats", (getter)Books_get_stats, NULL, "published, dropped, messages, order_count, memory_bytes, alloc_failures, system_event", NULL},
    {"feed_stale", (getter)Books_get_feed_stale, (setter)Books_set_feed_stale, "every book flagged stale (outputs.py feed_stale)", NULL},
    {"event_clock", (getter)Books_get_event_clock, (setter)Books_set_event_clock, "output stamps = the packet's rx (outputs.py event_clock)", NULL},
    {"midnight_ns", (getter)Books_get_midnight, (setter)Books_set_midnight, "epoch ns of the venue's midnight", NULL},
    {"marks", (getter)Books_get_marks, NULL, "each slot's last good mark", NULL},
    {NULL}
};

static PyMethodDef Books_methods[] = {
    {"apply_packet", (PyCFunction)Books_apply_packet, METH_VARARGS, "apply_packet(buffer, start, end, mold_sequence, t_rx_ns) -> updates"},
    {"bind_sequencer", (PyCFunction)Books_bind_sequencer, METH_VARARGS, "bind_sequencer(sequencer, header_fields, "
     "header_size, (heartbeat_count, end_of_session_count)): whose in-order accept accept_packet runs"},
    {"accept_packet", (PyCFunction)(void (*)(void))Books_accept_packet, METH_FASTCALL, "accept_packet(buffer, nbytes, "
     "rx_ns, live[, now_ns]) -> updates, or -1: not in order, nothing changed (see the C source)"},
    {"receive_in_order", (PyCFunction)Books_receive_in_order, METH_NOARGS, "receive_in_order() -> -2 taken, "
     "n: n bytes for the Python path, -1 nothing waiting (see the C source)"},
    {"apply_message", (PyCFunction)Books_apply_message, METH_O, "apply_message(message) -> symbol id, -1, or None (not an ITCH message)"},
    {"publish", (PyCFunction)Books_publish, METH_VARARGS, "publish(sid, mold_sequence, t_rx_ns, messages, to) -> False if dropped"},
    {"reset", (PyCFunction)Books_reset, METH_O, "reset(sid): book.py OrderBook.reset"},
    {"clear", (PyCFunction)Books_clear, METH_NOARGS, "clear(): books.py BookSet.clear"},
    {"state", (PyCFunction)Books_state, METH_O, "state(sid) -> tuple (see the C source)"},
    {"set_inconsistent", (PyCFunction)Books_set_inconsistent, METH_VARARGS, "set_inconsistent(sid, flag, error|None)"},
    {"levels", (PyCFunction)Books_levels, METH_VARARGS, "levels(sid, is_buy) -> [(price, shares)] best first"},
    {"orders", (PyCFunction)Books_orders, METH_O, "orders(sid) -> {ref: (side, price, shares)}"},
    {"order_counts", (PyCFunction)Books_order_counts, METH_VARARGS, "order_counts(sid, is_buy) -> [orders] best first"},
    {"flagged", (PyCFunction)Books_flagged, METH_NOARGS, "flagged() -> symbol ids of the books inconsistent or crossed"},
    {"sid_of_locate", (PyCFunction)Books_sid_of_locate, METH_O, "sid_of_locate(locate) -> symbol id or -1"},
    {NULL}
};

static PyTypeObject BooksType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.feed._book_fast.Books",
    .tp_basicsize = sizeof(Books),
    .tp_dealloc = (destructor)Books_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Every book of the feed, and its BookUpdate / market-state writer (see appliance.feed.fast).",
    .tp_methods = Books_methods,
    .tp_getset = Books_getset,
    .tp_init = (initproc)Books_init,
    .tp_new = PyType_GenericNew,
};

/* ---------------------------------------------------------------- the feed socket's receive (receiver.py) */

/* Slots of a receiver's stats array('q') (receiver.py STAT_NAMES holds the same order; a test compares both paths). */
enum { ST_RX_NS, ST_SOURCE_HOST, ST_SOURCE_PORT, ST_PACKETS, ST_BYTES, ST_TRUNCATED, ST_ERRORS, ST_MISSING_TS,
       ST_FOREIGN, ST_FOREIGN_HOST, ST_FOREIGN_PORT, N_STATS };
#define MAX_FOREIGN_PER_RECEIVE 64

/* Receiver(fd, buffer, stats, expected_host, expected_port); receive() -> nbytes, or -1 when nothing is waiting (or a
 * counted error). receiver.py's _receive_python without an exception per empty poll, its arguments held (no parsing
 * per poll): a datagram from anyone but expected_host (-1: anyone) / expected_port (-1: any) is counted foreign and
 * skipped; the kernel receive timestamp (SO_TIMESTAMPNS) goes to stats[ST_RX_NS], the clock when it is missing
 * (counted). */
static long recv_one(Receiver *r) {                /* nbytes, -1 nothing waiting, -2 a Python error (a signal) */
    int64_t *stats = (int64_t *)r->st.buf;
    for (int i = 0; i < MAX_FOREIGN_PER_RECEIVE; i++) {
        struct sockaddr_in addr;
        union { char buf[CMSG_SPACE(sizeof(struct timespec))]; struct cmsghdr align; } control;
        struct iovec iov = {r->buf.buf, (size_t)r->buf.len};
        struct msghdr m;
        memset(&m, 0, sizeof m);
        memset(&addr, 0, sizeof addr);
        m.msg_name = &addr; m.msg_namelen = sizeof addr;
        m.msg_iov = &iov; m.msg_iovlen = 1;
        m.msg_control = control.buf; m.msg_controllen = sizeof control.buf;
        ssize_t n = recvmsg(r->fd, &m, 0);
        if (n < 0) {
            if (errno == EINTR) {
                if (PyErr_CheckSignals() < 0) return -2;
                i--;
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) stats[ST_ERRORS]++;
            return -1;
        }
        int64_t host = (int64_t)ntohl(addr.sin_addr.s_addr), port = (int64_t)ntohs(addr.sin_port);
        if (r->host >= 0 && (host != r->host || (r->port >= 0 && port != r->port))) {
            stats[ST_FOREIGN]++;
            stats[ST_FOREIGN_HOST] = host;
            stats[ST_FOREIGN_PORT] = port;
            continue;
        }
        int64_t rx = 0;
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS &&
                c->cmsg_len >= CMSG_LEN(sizeof(struct timespec))) {
                struct timespec ts;
                memcpy(&ts, CMSG_DATA(c), sizeof ts);
                rx = (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
            }
        }
        if (!rx) { rx = now_ns(); stats[ST_MISSING_TS]++; }
        if (m.msg_flags & MSG_TRUNC) stats[ST_TRUNCATED]++;
        stats[ST_RX_NS] = rx;
        stats[ST_SOURCE_HOST] = host;
        stats[ST_SOURCE_PORT] = port;
        stats[ST_PACKETS]++;
        stats[ST_BYTES] += n;
        return (long)n;
    }
    return -1;
}

static int Receiver_init(Receiver *r, PyObject *args, PyObject *kw) {
    int fd;
    PyObject *buffer, *stats;
    long long host, port;
    if (!PyArg_ParseTuple(args, "iOOLL:Receiver", &fd, &buffer, &stats, &host, &port)) return -1;
    if (r->buf.obj) { PyErr_SetString(PyExc_RuntimeError, "Receiver is initialised once"); return -1; }
    if (PyObject_GetBuffer(buffer, &r->buf, PyBUF_WRITABLE) < 0) return -1;
    if (get_counters(stats, &r->st, N_STATS, "stats") < 0) return -1;
    r->fd = fd;
    r->host = host;
    r->port = port;
    return 0;
}

static void Receiver_dealloc(Receiver *r) {
    if (r->buf.obj) PyBuffer_Release(&r->buf);
    if (r->st.obj) PyBuffer_Release(&r->st);
    Py_TYPE(r)->tp_free((PyObject *)r);
}

static PyObject *Receiver_receive(Receiver *r, PyObject *unused) {
    if (!r->buf.obj) { PyErr_SetString(PyExc_RuntimeError, "Receiver was not initialised"); return NULL; }
    long n = recv_one(r);
    return n == -2 ? NULL : PyLong_FromLong(n);
}

static PyObject *Receiver_detach(Receiver *r, PyObject *unused) {
    r->fd = -1;                                     /* the socket is closed: its number may be reused */
    Py_RETURN_NONE;
}

static PyMethodDef Receiver_methods[] = {
    {"receive", (PyCFunction)Receiver_receive, METH_NOARGS, "receive() -> nbytes, or -1 when nothing is waiting"},
    {"detach", (PyCFunction)Receiver_detach, METH_NOARGS, "detach(): the socket was closed; polls now count EBADF"},
    {NULL}
};

static PyTypeObject ReceiverType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.feed._book_fast.Receiver",
    .tp_basicsize = sizeof(Receiver),
    .tp_dealloc = (destructor)Receiver_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "One UDP socket's receive into a buffer with its stats (see appliance.feed.receiver).",
    .tp_methods = Receiver_methods,
    .tp_init = (initproc)Receiver_init,
    .tp_new = PyType_GenericNew,
};

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, "configure(itch_fields, sizes, book_update_fields, (type_id, version, size, depth), "
     "market_state_fields, counter_names, flags, scanner_slots)"},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_book_fast", "The compiled feed path: ITCH books and their BookUpdates (see appliance.feed.fast).",
    -1, methods, NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC PyInit__book_fast(void) {
    if (PyType_Ready(&BooksType) < 0 || PyType_Ready(&ReceiverType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&BooksType);
    if (PyModule_AddObject(m, "Books", (PyObject *)&BooksType) < 0) { Py_DECREF(&BooksType); Py_DECREF(m); return NULL; }
    Py_INCREF(&ReceiverType);
    if (PyModule_AddObject(m, "Receiver", (PyObject *)&ReceiverType) < 0) { Py_DECREF(&ReceiverType); Py_DECREF(m); return NULL; }
    return m;
}
