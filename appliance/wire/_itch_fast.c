/* The C fast path of the ITCH block scanner (appliance.wire.itch.BlockScanner).
 *
 * It carries no copy of the ITCH layouts: itch.py calls configure() at import
 * with the (kind, size) signature of every message type derived from the
 * declarative table in itch.py, and this file only interprets that signature.
 * The tests check, for every message type, that a C scan returns exactly what
 * the struct codec returns.
 *
 * scan(buffer, start, end, subscribed, always, strict, counters) walks
 * [u16 length][message] blocks (BinaryFILE and MoldUDP64 framing) and yields
 * one raw tuple per message that passes the stock-locate filter. Bad blocks
 * are counted in counters[2] and skipped, or raise the configured
 * WireFormatError(offset, reason) when strict. An incomplete block at the end
 * stops the iteration; the iterator's `offset` says where it starts (with
 * `final`, the range is a whole packet and such a tail is counted as malformed).
 *
 * Build alone: gcc -shared -fPIC -O2 -std=c11 $(python3-config --includes) \
 *   -o appliance/wire/_itch_fast$(python3-config --extension-suffix) appliance/wire/_itch_fast.c
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

enum { K_CHAR = 0, K_ALPHA = 1, K_U8 = 2, K_U16 = 3, K_U32 = 4, K_U48 = 5, K_U64 = 6 };
enum { C_DECODED = 0, C_FILTERED = 1, C_MALFORMED = 2, N_COUNTERS = 3 };
#define MAX_FIELDS 32

typedef struct { uint8_t kind; uint8_t size; } FieldSpec;
typedef struct { Py_ssize_t size; int nfields; FieldSpec fields[MAX_FIELDS]; } TypeSpec;

static TypeSpec type_specs[256];          /* size 0: unknown type */
static PyObject *error_class = NULL;      /* WireFormatError */
static PyObject *one_byte[256];           /* cached 1-byte bytes objects for char fields */

static inline uint64_t be_read(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

/* ---------------------------------------------------------------- configure */

static int kind_size_ok(long kind, long size) {
    switch (kind) {
    case K_CHAR: case K_U8: return size == 1;
    case K_ALPHA: return size >= 1 && size <= 255;
    case K_U16: return size == 2;
    case K_U32: return size == 4;
    case K_U48: return size == 6;
    case K_U64: return size == 8;
    default: return 0;
    }
}

static PyObject *configure(PyObject *self, PyObject *args) {
    PyObject *table, *errcls;
    if (!PyArg_ParseTuple(args, "OO:configure", &table, &errcls)) return NULL;
    PyObject *seq = PySequence_Fast(table, "table must be a sequence of 256 entries");
    if (!seq) return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != 256) {
        Py_DECREF(seq);
        PyErr_SetString(PyExc_ValueError, "table must have 256 entries");
        return NULL;
    }
    TypeSpec specs[256];
    memset(specs, 0, sizeof specs);
    for (int t = 0; t < 256; t++) {
        PyObject *entry = PySequence_Fast_GET_ITEM(seq, t);
        if (entry == Py_None) continue;
        PyObject *fields = PySequence_Fast(entry, "entry must be a sequence of (kind, size)");
        if (!fields) { Py_DECREF(seq); return NULL; }
        Py_ssize_t n = PySequence_Fast_GET_SIZE(fields);
        if (n < 1 || n > MAX_FIELDS) {
            Py_DECREF(fields); Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "type %d: %zd fields", t, n);
            return NULL;
        }
        Py_ssize_t total = 0;
        for (Py_ssize_t i = 0; i < n; i++) {
            long kind, size;
            if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(fields, i), "ll", &kind, &size)) {
                Py_DECREF(fields); Py_DECREF(seq); return NULL;
            }
            if (!kind_size_ok(kind, size)) {
                Py_DECREF(fields); Py_DECREF(seq);
                PyErr_Format(PyExc_ValueError, "type %d field %zd: bad kind %ld / size %ld", t, i, kind, size);
                return NULL;
            }
            specs[t].fields[i].kind = (uint8_t)kind;
            specs[t].fields[i].size = (uint8_t)size;
            total += size;
        }
        specs[t].nfields = (int)n;
        specs[t].size = total;
        Py_DECREF(fields);
    }
    Py_DECREF(seq);
    memcpy(type_specs, specs, sizeof specs);
    Py_INCREF(errcls);
    Py_XSETREF(error_class, errcls);
    Py_RETURN_NONE;
}

/* ---------------------------------------------------------------- decode one message */

static PyObject *decode_message(const uint8_t *p, const TypeSpec *spec) {
    PyObject *tuple = PyTuple_New(spec->nfields);
    if (!tuple) return NULL;
    for (int i = 0; i < spec->nfields; i++) {
        const FieldSpec *f = &spec->fields[i];
        PyObject *v;
        switch (f->kind) {
        case K_CHAR: v = one_byte[*p]; Py_INCREF(v); break;
        case K_ALPHA: v = PyBytes_FromStringAndSize((const char *)p, f->size); break;
        case K_U8: v = PyLong_FromLong(*p); break;
        case K_U16: v = PyLong_FromLong((long)((p[0] << 8) | p[1])); break;
        case K_U32: v = PyLong_FromUnsignedLong((unsigned long)be_read(p, 4)); break;
        default: v = PyLong_FromUnsignedLongLong(be_read(p, f->size)); break;
        }
        if (!v) { Py_DECREF(tuple); return NULL; }
        PyTuple_SET_ITEM(tuple, i, v);
        p += f->size;
    }
    return tuple;
}

/* ---------------------------------------------------------------- scan iterator */

typedef struct {
    PyObject_HEAD
    Py_buffer data;
    Py_buffer subscribed;   /* .buf NULL: no locate filter */
    Py_buffer counters;     /* int64[3] */
    uint8_t always[256];
    Py_ssize_t offset, end;
    int strict;
    int final;              /* the range is a whole packet: an incomplete tail is malformed, not pending */
} ScanIter;

static void scan_dealloc(ScanIter *it) {
    if (it->data.obj) PyBuffer_Release(&it->data);
    if (it->subscribed.obj) PyBuffer_Release(&it->subscribed);
    if (it->counters.obj) PyBuffer_Release(&it->counters);
    Py_TYPE(it)->tp_free((PyObject *)it);
}

static PyObject *raise_wire(Py_ssize_t offset, const char *fmt, ...) {
    char reason[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    PyObject *exc = PyObject_CallFunction(error_class, "ns", offset, reason);
    if (exc) { PyErr_SetObject((PyObject *)Py_TYPE(exc), exc); Py_DECREF(exc); }
    return NULL;
}

static PyObject *scan_next(ScanIter *it) {
    const uint8_t *buf = (const uint8_t *)it->data.buf;
    const uint8_t *sub = (const uint8_t *)it->subscribed.buf;
    int64_t *counters = (int64_t *)it->counters.buf;
    Py_ssize_t offset = it->offset, end = it->end;
    while (offset + 2 <= end) {
        Py_ssize_t length = (buf[offset] << 8) | buf[offset + 1];
        Py_ssize_t body = offset + 2;
        if (body + length > end) break;
        if (length == 0) {
            it->offset = body;
            if (it->strict) return raise_wire(offset, "zero-length message block");
            counters[C_MALFORMED]++;
            offset = body;
            continue;
        }
        uint8_t type = buf[body];
        const TypeSpec *spec = &type_specs[type];
        Py_ssize_t next = body + length;
        if (spec->size != length) {
            it->offset = next;
            if (it->strict) {
                if (spec->size == 0) {
                    if (type >= 0x20 && type < 0x7f)
                        return raise_wire(body, "unknown ITCH message type b'%c'", type);
                    return raise_wire(body, "unknown ITCH message type b'\\x%02x'", type);
                }
                return raise_wire(offset, "%s message '%c': block length %zd, expected %zd",
                                  length > spec->size ? "oversized" : "truncated", type, length, spec->size);
            }
            counters[C_MALFORMED]++;
            offset = next;
            continue;
        }
        if (sub && !it->always[type] && !sub[(buf[body + 1] << 8) | buf[body + 2]]) {
            counters[C_FILTERED]++;
            offset = next;
            continue;
        }
        it->offset = next;
        counters[C_DECODED]++;
        return decode_message(buf + body, spec);
    }
    if (it->final && offset < end) {
        it->offset = end;
        if (it->strict)
            return raise_wire(offset, "truncated block: %zd bytes left at the end, block needs more", end - offset);
        counters[C_MALFORMED]++;
        return NULL;
    }
    it->offset = offset;
    return NULL;  /* StopIteration */
}

static PyMemberDef scan_members[] = {
    {"offset", T_PYSSIZET, offsetof(ScanIter, offset), READONLY, "where the walk stands (an incomplete block starts here)"},
    {"end", T_PYSSIZET, offsetof(ScanIter, end), READONLY, "end of the scanned range"},
    {NULL}
};

static PyTypeObject ScanIterType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "appliance.wire._itch_fast.ScanIterator",
    .tp_basicsize = sizeof(ScanIter),
    .tp_dealloc = (destructor)scan_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Iterator of raw ITCH tuples over [u16 length][message] blocks.",
    .tp_iter = PyObject_SelfIter,
    .tp_iternext = (iternextfunc)scan_next,
    .tp_members = scan_members,
};

static PyObject *scan(PyObject *self, PyObject *args) {
    PyObject *data, *subscribed, *always, *counters;
    Py_ssize_t start, end;
    int strict, final = 0;
    if (!PyArg_ParseTuple(args, "OnnOOpO|p:scan", &data, &start, &end, &subscribed, &always, &strict, &counters, &final))
        return NULL;
    if (!error_class) { PyErr_SetString(PyExc_RuntimeError, "configure() was not called"); return NULL; }
    ScanIter *it = PyObject_New(ScanIter, &ScanIterType);
    if (!it) return NULL;
    memset(&it->data, 0, sizeof(Py_buffer));
    memset(&it->subscribed, 0, sizeof(Py_buffer));
    memset(&it->counters, 0, sizeof(Py_buffer));
    it->strict = strict;
    it->final = final;
    if (PyObject_GetBuffer(data, &it->data, PyBUF_SIMPLE) < 0) goto fail;
    if (start < 0 || end < start || end > it->data.len) {
        PyErr_Format(PyExc_ValueError, "bad range %zd:%zd of a %zd-byte buffer", start, end, it->data.len);
        goto fail;
    }
    it->offset = start;
    it->end = end;
    if (subscribed != Py_None) {
        if (PyObject_GetBuffer(subscribed, &it->subscribed, PyBUF_SIMPLE) < 0) goto fail;
        if (it->subscribed.len != 65536) { PyErr_SetString(PyExc_ValueError, "subscribed must be 65536 bytes"); goto fail; }
    }
    {
        Py_buffer a;
        if (PyObject_GetBuffer(always, &a, PyBUF_SIMPLE) < 0) goto fail;
        if (a.len != 256) { PyBuffer_Release(&a); PyErr_SetString(PyExc_ValueError, "always must be 256 bytes"); goto fail; }
        memcpy(it->always, a.buf, 256);
        PyBuffer_Release(&a);
    }
    if (PyObject_GetBuffer(counters, &it->counters, PyBUF_WRITABLE | PyBUF_FORMAT) < 0) goto fail;
    if (it->counters.len < (Py_ssize_t)(N_COUNTERS * sizeof(int64_t)) || it->counters.itemsize != 8 ||
        !it->counters.format || (strcmp(it->counters.format, "q") != 0 && strcmp(it->counters.format, "l") != 0)) {
        PyErr_SetString(PyExc_ValueError, "counters must be a writable array('q') of at least 3 items");
        goto fail;
    }
    return (PyObject *)it;
fail:
    Py_DECREF(it);
    return NULL;
}

static PyMethodDef methods[] = {
    {"configure", configure, METH_VARARGS, "configure(table, error_class): per type byte, None or ((kind, size), ...)."},
    {"scan", scan, METH_VARARGS, "scan(buffer, start, end, subscribed|None, always, strict, counters[, final]) -> iterator of raw tuples."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_itch_fast", "C fast path of the ITCH block scanner, driven by itch.py's schema.", -1, methods,
    NULL, NULL, NULL, NULL
};

PyMODINIT_FUNC PyInit__itch_fast(void) {
    if (PyType_Ready(&ScanIterType) < 0) return NULL;
    for (int i = 0; i < 256; i++) {
        char c = (char)i;
        one_byte[i] = PyBytes_FromStringAndSize(&c, 1);
        if (!one_byte[i]) return NULL;
    }
    PyObject *m = PyModule_Create(&module);
    if (!m) return NULL;
    Py_INCREF(&ScanIterType);
    if (PyModule_AddObject(m, "ScanIterator", (PyObject *)&ScanIterType) < 0) { Py_DECREF(&ScanIterType); Py_DECREF(m); return NULL; }
    return m;
}
