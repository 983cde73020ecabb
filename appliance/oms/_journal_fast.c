/*
 * The OMS journal's hot path in C: CRC-32C and one whole record append into the mapped file.
 *
 * A record is a header then its payload. The header's layout is not written here: journal.py
 * gives it once with set_layout() from journal_format.RECORD_HEADER (the header's size and the
 * offset and width of its crc, length, sequence, timestamp and type fields); every other header
 * byte is written zero. The CRC field comes first and covers every byte after it. In Python the
 * pack, the copy and the CRC call cost about 3 us a record; here one call does all three.
 *
 * CRC-32C (Castagnoli, reflected 0x82F63B78), slicing by 8: portable C, no CPU feature test;
 * the same function the Python fallbacks compute (crc32c(b"123456789") == 0xE3069283).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the journal is little-endian and store_le() copies the low bytes of a native integer"
#endif

#define POLY 0x82F63B78u
#define MAX_HEADER_SIZE 256

/* The record header's layout, from set_layout(); header_size 0 until then (append refuses). */
enum { F_CRC, F_LENGTH, F_SEQUENCE, F_TIMESTAMP, F_TYPE, N_FIELDS };
static const char *field_names[N_FIELDS] = {"crc", "length", "sequence", "timestamp", "type"};
static Py_ssize_t header_size;
static Py_ssize_t field_offset[N_FIELDS];
static int field_width[N_FIELDS];

static uint32_t table[8][256];

static void build_tables(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = n;
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ POLY : crc >> 1;
        table[0][n] = crc;
    }
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t crc = table[0][n];
        for (int t = 1; t < 8; t++) {
            crc = table[0][crc & 0xFF] ^ (crc >> 8);
            table[t][n] = crc;
        }
    }
}

/* The raw register update (no pre/post inversion). */
static uint32_t crc_update(uint32_t crc, const unsigned char *p, size_t n)
{
    while (n && ((uintptr_t)p & 7)) {
        crc = table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
        n--;
    }
    while (n >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);          /* little-endian x86-64: byte 0 is the low byte */
        uint32_t lo = (uint32_t)word ^ crc;
        uint32_t hi = (uint32_t)(word >> 32);
        crc = table[7][lo & 0xFF] ^ table[6][(lo >> 8) & 0xFF] ^ table[5][(lo >> 16) & 0xFF] ^
              table[4][lo >> 24] ^ table[3][hi & 0xFF] ^ table[2][(hi >> 8) & 0xFF] ^
              table[1][(hi >> 16) & 0xFF] ^ table[0][hi >> 24];
        p += 8;
        n -= 8;
    }
    while (n--)
        crc = table[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return crc;
}

PyDoc_STRVAR(crc32c_doc,
"crc32c(data, crc=0) -> int\n\nCRC-32C of a bytes-like object, continuing ``crc`` (crc32c(b, crc32c(a)) == crc32c(a + b)).");

static PyObject *
py_crc32c(PyObject *self, PyObject *args)
{
    Py_buffer view;
    unsigned long crc = 0;
    if (!PyArg_ParseTuple(args, "y*|k", &view, &crc))
        return NULL;
    uint32_t value;
    Py_BEGIN_ALLOW_THREADS
    value = crc_update((uint32_t)crc ^ 0xFFFFFFFFu, view.buf, (size_t)view.len) ^ 0xFFFFFFFFu;
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&view);
    return PyLong_FromUnsignedLong(value);
}

/* Little-endian store of the low ``width`` bytes of ``value`` (x86-64: the first bytes). */
static inline void store_le(unsigned char *p, uint64_t value, int width)
{
    memcpy(p, &value, (size_t)width);
}

static inline int fits(uint64_t value, int width)
{
    return width == 8 || value < ((uint64_t)1 << (8 * width));
}

PyDoc_STRVAR(set_layout_doc,
"set_layout(header_size, fields)\n\n"
"The record header's layout: ``fields`` is five (offset, width) pairs, for the crc, length,\n"
"sequence, timestamp and type fields, in that order. The crc field must come first and be 4\n"
"bytes (it covers every byte after it); widths are 1, 2, 4 or 8; fields lie inside the header and\n"
"do not overlap. ValueError otherwise (and the previous layout stays).");

static PyObject *
py_set_layout(PyObject *self, PyObject *args)
{
    Py_ssize_t size;
    PyObject *fields;
    if (!PyArg_ParseTuple(args, "nO", &size, &fields))
        return NULL;
    if (size < 4 || size > MAX_HEADER_SIZE) {
        PyErr_Format(PyExc_ValueError, "record header of %zd bytes: 4 to %d", size, MAX_HEADER_SIZE);
        return NULL;
    }
    PyObject *seq = PySequence_Fast(fields, "fields must be a sequence of (offset, width) pairs");
    if (seq == NULL)
        return NULL;
    if (PySequence_Fast_GET_SIZE(seq) != N_FIELDS) {
        Py_DECREF(seq);
        PyErr_Format(PyExc_ValueError, "fields must be %d (offset, width) pairs: crc, length, sequence, "
                     "timestamp, type", N_FIELDS);
        return NULL;
    }
    Py_ssize_t offsets[N_FIELDS];
    int widths[N_FIELDS];
    unsigned char used[MAX_HEADER_SIZE] = {0};
    for (int i = 0; i < N_FIELDS; i++) {
        Py_ssize_t offset, width;
        if (!PyArg_ParseTuple(PySequence_Fast_GET_ITEM(seq, i), "nn;each field is (offset, width)", &offset, &width)) {
            Py_DECREF(seq);
            return NULL;
        }
        if (!(width == 1 || width == 2 || width == 4 || width == 8) || offset < 0 || offset + width > size) {
            Py_DECREF(seq);
            PyErr_Format(PyExc_ValueError, "field %s: offset %zd width %zd does not fit a %zd-byte header "
                         "(widths 1, 2, 4, 8)", field_names[i], offset, width, size);
            return NULL;
        }
        for (Py_ssize_t k = offset; k < offset + width; k++) {
            if (used[k]) {
                Py_DECREF(seq);
                PyErr_Format(PyExc_ValueError, "field %s overlaps another at byte %zd", field_names[i], k);
                return NULL;
            }
            used[k] = 1;
        }
        offsets[i] = offset;
        widths[i] = (int)width;
    }
    Py_DECREF(seq);
    if (offsets[F_CRC] != 0 || widths[F_CRC] != 4) {
        PyErr_SetString(PyExc_ValueError, "the crc field must be the header's first 4 bytes (it covers what follows)");
        return NULL;
    }
    memcpy(field_offset, offsets, sizeof offsets);
    memcpy(field_width, widths, sizeof widths);
    header_size = size;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(append_doc,
"append(buffer, offset, record_type, sequence, timestamp_ns, payload) -> end\n\n"
"Write one whole record at ``offset`` of the writable ``buffer`` (the mapped journal): header in\n"
"the layout given to set_layout(), payload, then the CRC field last. Returns the offset just after\n"
"the payload (unpadded). The caller has checked that the record fits (Journal.append); a record\n"
"past the buffer, or a value too wide for its field, raises ValueError; no layout, RuntimeError.");

static PyObject *
py_append(PyObject *self, PyObject *args)
{
    Py_buffer out, payload;
    Py_ssize_t offset;
    unsigned long long record_type, sequence, timestamp;
    if (!PyArg_ParseTuple(args, "w*nKKKy*", &out, &offset, &record_type, &sequence, &timestamp, &payload))
        return NULL;
    const char *error = NULL;
    Py_ssize_t end = offset + header_size + payload.len;
    if (header_size == 0)
        error = "no record layout: call set_layout() first";
    else if (offset < 0 || end > out.len)
        error = "journal record does not fit the buffer";
    else if (!fits((uint64_t)payload.len, field_width[F_LENGTH]) || !fits(record_type, field_width[F_TYPE]) ||
             !fits(sequence, field_width[F_SEQUENCE]) || !fits(timestamp, field_width[F_TIMESTAMP]))
        error = "a value does not fit its field of the record header";
    if (error != NULL) {
        PyBuffer_Release(&out);
        PyBuffer_Release(&payload);
        PyErr_SetString(header_size == 0 ? PyExc_RuntimeError : PyExc_ValueError, error);
        return NULL;
    }
    unsigned char *p = (unsigned char *)out.buf + offset;
    memset(p + 4, 0, (size_t)(header_size - 4));
    store_le(p + field_offset[F_LENGTH], (uint64_t)payload.len, field_width[F_LENGTH]);
    store_le(p + field_offset[F_SEQUENCE], sequence, field_width[F_SEQUENCE]);
    store_le(p + field_offset[F_TIMESTAMP], timestamp, field_width[F_TIMESTAMP]);
    store_le(p + field_offset[F_TYPE], record_type, field_width[F_TYPE]);
    memcpy(p + header_size, payload.buf, (size_t)payload.len);
    uint32_t crc = crc_update(0xFFFFFFFFu, p + 4, (size_t)(header_size - 4 + payload.len)) ^ 0xFFFFFFFFu;
    memcpy(p, &crc, 4);
    PyBuffer_Release(&out);
    PyBuffer_Release(&payload);
    return PyLong_FromSsize_t(end);
}

static PyMethodDef methods[] = {
    {"crc32c", py_crc32c, METH_VARARGS, crc32c_doc},
    {"set_layout", py_set_layout, METH_VARARGS, set_layout_doc},
    {"append", py_append, METH_VARARGS, append_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "appliance.oms._journal_fast",
    "CRC-32C and the journal's record append, in C (see journal.py and journal_format.py).", -1, methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC
PyInit__journal_fast(void)
{
    build_tables();
    return PyModule_Create(&module);
}
