#include "base/mem.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n) {
    fprintf(stderr, "reel: out of memory (allocating %zu bytes)\n", n);
    abort();
}

void *reel_malloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (p == NULL)
        oom(n);
    return p;
}

void *reel_calloc(size_t count, size_t size) {
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (p == NULL)
        oom(count * size);
    return p;
}

void *reel_realloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    if (q == NULL)
        oom(n);
    return q;
}

char *reel_strdup(const char *s) {
    return s ? reel_strndup(s, strlen(s)) : NULL;
}

char *reel_strndup(const char *s, size_t n) {
    char *p = reel_malloc(n + 1);
    if (n) /* (protobuf-c's empty bytes have NULL data: memcpy may not take it) */
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void reel_strcpy_to(char *dst, size_t n, const char *s) {
    size_t len = s ? strnlen(s, n - 1) : 0;
    memcpy(dst, s ? s : "", len);
    dst[len] = '\0';
}

char *reel_asprintf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        oom(0);
    char *p = reel_malloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void reel_buf_init(reel_buf_t *b, size_t max) {
    memset(b, 0, sizeof *b);
    b->max = max;
}

void reel_buf_free(reel_buf_t *b) {
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void reel_buf_reset(reel_buf_t *b) {
    b->len = 0;
    if (b->data)
        b->data[0] = 0;
}

reel_rc reel_buf_reserve(reel_buf_t *b, size_t n) {
    size_t max = b->max ? b->max : SIZE_MAX / 2;
    if (n > max || b->len > max - n)
        return REEL_LIMIT;
    size_t need = b->len + n + 1;
    if (need <= b->cap)
        return REEL_OK;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = reel_realloc(b->data, cap);
    b->cap = cap;
    return REEL_OK;
}

reel_rc reel_buf_append(reel_buf_t *b, const void *p, size_t n) {
    reel_rc rc = reel_buf_reserve(b, n);
    if (rc != REEL_OK)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = 0;
    return REEL_OK;
}

reel_rc reel_buf_puts(reel_buf_t *b, const char *s) {
    return reel_buf_append(b, s, strlen(s));
}

void reel_buf_put_quoted(reel_buf_t *b, const void *p, size_t n, size_t max) {
    const unsigned char *s = p;
    reel_buf_puts(b, "\"");
    for (size_t i = 0; i < n && i < max; i++) {
        unsigned char ch = s[i];
        if (ch == '\r')
            reel_buf_puts(b, "\\r");
        else if (ch == '\n')
            reel_buf_puts(b, "\\n");
        else if (ch < 0x20 || ch >= 0x7f || ch == '"' || ch == '\\')
            reel_buf_printf(b, "\\x%02x", ch);
        else
            reel_buf_append(b, s + i, 1);
    }
    reel_buf_puts(b, n > max ? "...\"" : "\"");
}

reel_rc reel_buf_printf(reel_buf_t *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return REEL_INVALID;
    reel_rc rc = reel_buf_reserve(b, (size_t)n);
    if (rc != REEL_OK)
        return rc;
    va_start(ap, fmt);
    vsnprintf((char *)b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
    return REEL_OK;
}

void reel_buf_consume(reel_buf_t *b, size_t n) {
    if (n >= b->len) {
        reel_buf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = 0;
}

char *reel_base64(const void *data, size_t n, size_t *out_len) {
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const uint8_t *p = data;
    char *s = reel_malloc(4 * ((n + 2) / 3) + 1);
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t w = (uint32_t)p[i] << 16;
        if (i + 1 < n)
            w |= (uint32_t)p[i + 1] << 8;
        if (i + 2 < n)
            w |= p[i + 2];
        s[o++] = tab[(w >> 18) & 63];
        s[o++] = tab[(w >> 12) & 63];
        s[o++] = i + 1 < n ? tab[(w >> 6) & 63] : '=';
        s[o++] = i + 2 < n ? tab[w & 63] : '=';
    }
    s[o] = '\0';
    if (out_len)
        *out_len = o;
    return s;
}

char *reel_shell_word(const char *s) {
    if (s[0] && strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                          "0123456789/._-+,:@%") == strlen(s))
        return reel_strdup(s);
    size_t n = 2;
    for (const char *c = s; *c; c++)
        n += *c == '\'' ? 4 : 1;
    char *w = reel_malloc(n + 1), *o = w;
    *o++ = '\'';
    for (const char *c = s; *c; c++) {
        if (*c == '\'') {
            memcpy(o, "'\\''", 4);
            o += 4;
        } else {
            *o++ = *c;
        }
    }
    *o++ = '\'';
    *o = '\0';
    return w;
}
