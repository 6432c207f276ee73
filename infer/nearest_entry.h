// The NearestEntry custom operator (nearest_entry.c, nearest_entry.go).
#ifndef INSPECTD_NEAREST_ENTRY_H
#define INSPECTD_NEAREST_ENTRY_H

#include <stddef.h>
#include <stdint.h>

// NE_DOMAIN and NE_OP_NAME name the operator in a graph.
#define NE_DOMAIN "ai.inspectd"
#define NE_OP_NAME "NearestEntry"

// NE_API_VERSION is the OrtApi version the operator declares and calls:
// bindingAPIVersion of ortlib.go.
#define NE_API_VERSION 24

// neSupported says whether this CPU runs the operator's kernel (x86-64 with
// AVX-512 VNNI).
int neSupported(void);

// neNewDomain creates the operator's custom-op domain with the library at
// handle (a dlopen handle) at OrtApi version apiVersion. It returns 0, or
// 1 with the reason in err.
int neNewDomain(void *handle, uint32_t apiVersion, void **domain, char *err, size_t errLen);

// neAddDomain adds domain to an OrtSessionOptions; 0 or 1 as neNewDomain.
int neAddDomain(void *handle, uint32_t apiVersion, void *sessionOptions, void *domain, char *err, size_t errLen);

#endif
