// Per-thread packing buffers: a worker thread runs product after product, and allocating
// (and faulting in, page by page) up to 8 MiB of packing space per call cost more than a
// small product's packing itself. Each thread keeps its own (no locking: the kernel runs
// on many threads at once), reached through a pthread key whose destructor frees them
// when the thread ends (Node.js worker threads come and go).
#include "pack_buffers.h"

#include <pthread.h>
#include <stdlib.h>
#include <sys/mman.h>

static pthread_key_t buffers_key;
static int key_ok;
static pthread_once_t buffers_once = PTHREAD_ONCE_INIT;

static void free_buffers(void* p) {
  struct pack_buffers* buf = p;
  free(buf->a);
  free(buf->b);
  free(buf);
}

static void create_key(void) { key_ok = pthread_key_create(&buffers_key, free_buffers) == 0; }

// Grows *data to hold len doubles. From 2 MiB on it is 2 MiB aligned and advised for
// transparent huge pages, so a packed block spans a few TLB entries. Returns 0 when memory
// runs out (the old buffer is kept).
static int reserve(double** data, size_t* have, size_t len) {
  if (*have >= len) return 1;
  const size_t huge = (size_t)2 << 20;
  const size_t align = len * sizeof(double) >= huge ? huge : 64;
  const size_t bytes = (len * sizeof(double) + align - 1) / align * align;
  double* p = aligned_alloc(align, bytes);
  if (p == NULL) return 0;
#ifdef MADV_HUGEPAGE
  if (align == huge) madvise(p, bytes, MADV_HUGEPAGE);  // advice only: failure changes nothing
#endif
  free(*data);
  *data = p;
  *have = len;
  return 1;
}

struct pack_buffers* dce_pack_buffers(size_t a_len, size_t b_len) {
  if (pthread_once(&buffers_once, create_key) != 0 || !key_ok) return NULL;
  struct pack_buffers* buf = pthread_getspecific(buffers_key);
  if (buf == NULL) {
    buf = calloc(1, sizeof *buf);
    if (buf == NULL) return NULL;
    if (pthread_setspecific(buffers_key, buf) != 0) {
      free(buf);
      return NULL;
    }
  }
  return reserve(&buf->a, &buf->a_len, a_len) && reserve(&buf->b, &buf->b_len, b_len) ? buf : NULL;
}
