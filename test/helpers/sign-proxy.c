/*
 * A PKCS#11 module standing in for a token that answers C_Sign wrongly: it
 * loads the real module named at build time (REAL_MODULE), forwards every
 * call to it, and alters C_Sign's output as the file MODE_FILE says when the
 * call is made (read each time, so a test changes the answer between calls):
 *   pass      the real module's answer
 *   truncate  the last octet dropped
 *   empty     no octets
 *   der       an ECDSA r||s re-encoded as the DER ECDSA-Sig-Value, as a module
 *             that answers CKM_ECDSA in the wrong form would (CKR_BUFFER_TOO_SMALL
 *             when the caller's buffer cannot hold it, as PKCS#11 says)
 *   hold FIRST THEN  the first signature by the key labelled THEN after one by the key
 *             labelled FIRST waits, on the caller's thread, after the real module
 *             signed: it writes a line to the FIFO MODE_FILE.held,
 *             then reads one from MODE_FILE.release (a token that takes its time, at a
 *             moment the test chooses)
 *   sessions N the token holds at most N sessions at once: C_OpenSession answers
 *             CKR_SESSION_COUNT beyond them, as an HSM with few sessions does
 * Built by the test with: cc -shared -fPIC -I<p11-kit headers> -DREAL_MODULE=... -DMODE_FILE=...
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include "pkcs11.h"

static CK_FUNCTION_LIST proxy;
static CK_FUNCTION_LIST_PTR real;

static void mode(char *out, size_t n) {
  FILE *f = fopen(MODE_FILE, "r");
  out[0] = 0;
  if (!f) return;
  if (!fgets(out, (int)n, f)) out[0] = 0;
  fclose(f);
  out[strcspn(out, "\r\n ")] = 0;
}

/* One unsigned INTEGER of `len` octets, minimal, at `out`; its encoded length. */
static size_t der_uint(const CK_BYTE *v, size_t len, CK_BYTE *out) {
  while (len > 1 && v[0] == 0) v++, len--;
  size_t pad = (v[0] & 0x80) ? 1 : 0;
  out[0] = 0x02;
  out[1] = (CK_BYTE)(len + pad);
  if (pad) out[2] = 0;
  memcpy(out + 2 + pad, v, len);
  return 2 + pad + len;
}

/* Sessions whose operation signs with the key to hold (by session handle, modulo). */
static volatile int hold_session[1024];
/* Set by a signature with the key named first in "hold FIRST THEN". */
static volatile int armed;

static CK_RV proxy_sign_init(CK_SESSION_HANDLE s, CK_MECHANISM_PTR mech, CK_OBJECT_HANDLE key) {
  char m[32];
  mode(m, sizeof m);
  hold_session[s % 1024] = 0;
  if (strcmp(m, "hold") == 0) {
    /* mode() cut the line at its first space: read it whole for the labels. */
    FILE *f = fopen(MODE_FILE, "r");
    char line[160] = {0}, first[64] = {0}, then[64] = {0};
    if (f) {
      if (!fgets(line, sizeof line, f)) line[0] = 0;
      fclose(f);
    }
    char label[128] = {0};
    CK_ATTRIBUTE a = {CKA_LABEL, label, sizeof label - 1};
    if (sscanf(line, "hold %63s %63s", first, then) == 2 &&
        real->C_GetAttributeValue(s, key, &a, 1) == CKR_OK && a.ulValueLen < sizeof label) {
      label[a.ulValueLen] = 0;
      if (strcmp(label, first) == 0) armed = 1;
      else if (armed && strcmp(label, then) == 0) {
        armed = 0;
        hold_session[s % 1024] = 1;
      }
    }
  }
  return real->C_SignInit(s, mech, key);
}

static void hold(void) {
  char path[600];
  snprintf(path, sizeof path, "%s.held", MODE_FILE);
  int fd = open(path, O_WRONLY);
  if (fd >= 0) {
    if (write(fd, "held\n", 5) < 0) { /* the test reads it or fails on its own deadline */ }
    close(fd);
  }
  snprintf(path, sizeof path, "%s.release", MODE_FILE);
  fd = open(path, O_RDONLY);
  if (fd >= 0) {
    char b[16];
    if (read(fd, b, sizeof b) < 0) { /* released either way */ }
    close(fd);
  }
}

static CK_RV proxy_sign(CK_SESSION_HANDLE s, CK_BYTE_PTR data, CK_ULONG data_len, CK_BYTE_PTR sig,
                        CK_ULONG_PTR sig_len) {
  char m[32];
  mode(m, sizeof m);
  if (strcmp(m, "der") == 0) {
    CK_BYTE raw[1024];
    CK_ULONG raw_len = sizeof raw;
    CK_RV rv = real->C_Sign(s, data, data_len, raw, &raw_len);
    if (rv != CKR_OK) return rv;
    CK_BYTE body[1040];
    size_t half = raw_len / 2;
    size_t n = der_uint(raw, half, body);
    n += der_uint(raw + half, half, body + n);
    CK_ULONG total = (CK_ULONG)(2 + n);
    if (sig == NULL) {
      *sig_len = total;
      return CKR_OK;
    }
    if (*sig_len < total) {
      *sig_len = total;
      return CKR_BUFFER_TOO_SMALL;
    }
    sig[0] = 0x30;
    sig[1] = (CK_BYTE)n;
    memcpy(sig + 2, body, n);
    *sig_len = total;
    return CKR_OK;
  }
  int held = hold_session[s % 1024];
  CK_RV rv = real->C_Sign(s, data, data_len, sig, sig_len);
  if (rv != CKR_OK || sig == NULL) return rv;
  if (held) {
    hold_session[s % 1024] = 0;
    hold();
  }
  if (strcmp(m, "truncate") == 0 && *sig_len > 0) *sig_len -= 1;
  else if (strcmp(m, "empty") == 0) *sig_len = 0;
  return rv;
}

/* Sessions open now through this module (counted whatever the mode). */
static volatile long sessions_open;

static CK_RV proxy_open_session(CK_SLOT_ID slot, CK_FLAGS flags, CK_VOID_PTR app, CK_NOTIFY notify,
                                CK_SESSION_HANDLE_PTR out) {
  char line[64] = {0};
  long most = 0;
  FILE *f = fopen(MODE_FILE, "r");
  if (f) {
    if (!fgets(line, sizeof line, f)) line[0] = 0;
    fclose(f);
  }
  if (sscanf(line, "sessions %ld", &most) == 1 && __atomic_load_n(&sessions_open, __ATOMIC_SEQ_CST) >= most)
    return CKR_SESSION_COUNT;
  CK_RV rv = real->C_OpenSession(slot, flags, app, notify, out);
  if (rv == CKR_OK) __atomic_add_fetch(&sessions_open, 1, __ATOMIC_SEQ_CST);
  return rv;
}

static CK_RV proxy_close_session(CK_SESSION_HANDLE s) {
  CK_RV rv = real->C_CloseSession(s);
  if (rv == CKR_OK) __atomic_sub_fetch(&sessions_open, 1, __ATOMIC_SEQ_CST);
  return rv;
}

static CK_RV proxy_close_all(CK_SLOT_ID slot) {
  CK_RV rv = real->C_CloseAllSessions(slot);
  if (rv == CKR_OK) __atomic_store_n(&sessions_open, 0, __ATOMIC_SEQ_CST);
  return rv;
}

static CK_RV proxy_finalize(CK_VOID_PTR reserved) {
  CK_RV rv = real->C_Finalize(reserved);
  if (rv == CKR_OK) __atomic_store_n(&sessions_open, 0, __ATOMIC_SEQ_CST);
  return rv;
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list) {
  if (!real) {
    void *h = dlopen(REAL_MODULE, RTLD_NOW | RTLD_LOCAL);
    if (!h) return CKR_GENERAL_ERROR;
    CK_C_GetFunctionList get = (CK_C_GetFunctionList)dlsym(h, "C_GetFunctionList");
    if (!get || get(&real) != CKR_OK) return CKR_GENERAL_ERROR;
    proxy = *real;
    proxy.C_GetFunctionList = C_GetFunctionList;
    proxy.C_Sign = proxy_sign;
    proxy.C_SignInit = proxy_sign_init;
    proxy.C_OpenSession = proxy_open_session;
    proxy.C_CloseSession = proxy_close_session;
    proxy.C_CloseAllSessions = proxy_close_all;
    proxy.C_Finalize = proxy_finalize;
  }
  *list = &proxy;
  return CKR_OK;
}
