// The NearestEntry operator: ONNX Runtime custom operator that replaces
// the int8 shared-memory comparison of the localisation graph (see
// nearest_graph.go) with one pass that keeps each cell's running minimum
// instead of writing and reading the [cells × entries] products. Only the
// C ABI of onnxruntime_c_api.h is used, through fixed OrtApi slots
// (checked with offsetof against the header vendored in
// github.com/yalue/onnxruntime_go v1.27.0), as ortlib.go does.
//
// A kernel packs the constant entries on its first run (under its mutex)
// and is then read-only; runs of one session do not overlap (Session.Run
// is used by one goroutine at a time), and their scratch is taken under
// the mutex all the same.

#include "nearest_entry.h"

#include <dlfcn.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// OrtApi slots this operator calls.
enum {
	neSlotCreateCustomOpDomain = 26,
	neSlotCustomOpDomainAdd = 27,
	neSlotAddCustomOpDomain = 28,
	neSlotGetTensorMutableData = 51,
	neSlotGetDimensionsCount = 61,
	neSlotGetDimensions = 62,
	neSlotGetTensorTypeAndShape = 65,
	neSlotKernelContextGetInput = 90,
	neSlotKernelContextGetOutput = 91,
	neSlotReleaseTensorTypeAndShapeInfo = 99,
	neSlotGetErrorMessage = 2,
	neSlotReleaseStatus = 93,
	neSlotKernelContextParallelFor = 274,
};

typedef void OrtStatusT;
typedef OrtStatusT *(*neCreateDomainFn)(const char *, void **);
typedef OrtStatusT *(*neDomainAddFn)(void *, const void *);
typedef OrtStatusT *(*neAddDomainFn)(void *, void *);
typedef OrtStatusT *(*neGetDataFn)(void *, void **);
typedef OrtStatusT *(*neDimsCountFn)(const void *, size_t *);
typedef OrtStatusT *(*neDimsFn)(const void *, int64_t *, size_t);
typedef OrtStatusT *(*neTypeShapeFn)(const void *, void **);
typedef OrtStatusT *(*neGetInputFn)(const void *, size_t, const void **);
typedef OrtStatusT *(*neGetOutputFn)(void *, size_t, const int64_t *, size_t, void **);
typedef void (*neReleaseInfoFn)(void *);
typedef const char *(*neErrorMessageFn)(const OrtStatusT *);
typedef void (*neReleaseStatusFn)(OrtStatusT *);
typedef OrtStatusT *(*neParallelForFn)(const void *, void (*)(void *, size_t), size_t, size_t, void *);

// OrtCustomOp as API version 24 declares it (208 bytes; ONNX Runtime reads
// fields by the version an operator declares, and some regardless).
typedef struct neCustomOp {
	uint32_t version;
	void *(*CreateKernel)(const struct neCustomOp *op, const void *api, const void *info);
	const char *(*GetName)(const struct neCustomOp *op);
	const char *(*GetExecutionProviderType)(const struct neCustomOp *op);
	int (*GetInputType)(const struct neCustomOp *op, size_t index);
	size_t (*GetInputTypeCount)(const struct neCustomOp *op);
	int (*GetOutputType)(const struct neCustomOp *op, size_t index);
	size_t (*GetOutputTypeCount)(const struct neCustomOp *op);
	void (*KernelCompute)(void *kernel, void *context);
	void (*KernelDestroy)(void *kernel);
	int (*GetInputCharacteristic)(const struct neCustomOp *op, size_t index);
	int (*GetOutputCharacteristic)(const struct neCustomOp *op, size_t index);
	int (*GetInputMemoryType)(const struct neCustomOp *op, size_t index);
	int (*GetVariadicInputMinArity)(const struct neCustomOp *op);
	int (*GetVariadicInputHomogeneity)(const struct neCustomOp *op);
	int (*GetVariadicOutputMinArity)(const struct neCustomOp *op);
	int (*GetVariadicOutputHomogeneity)(const struct neCustomOp *op);
	void *CreateKernelV2;
	void *KernelComputeV2;
	void *InferOutputShapeFn;
	int (*GetStartVersion)(const struct neCustomOp *op);
	int (*GetEndVersion)(const struct neCustomOp *op);
	size_t (*GetMayInplace)(int **inputIndex, int **outputIndex);
	void (*ReleaseMayInplace)(int *inputIndex, int *outputIndex);
	size_t (*GetAliasMap)(int **inputIndex, int **outputIndex);
	void (*ReleaseAliasMap)(int *inputIndex, int *outputIndex);
} neCustomOp;

_Static_assert(sizeof(neCustomOp) == 208, "OrtCustomOp of API version 24 is 208 bytes");

// ONNXTensorElementDataType values.
enum { neFloat = 1, neInt8 = 3 };

// Entries are compared in blocks of neBlockEntries (four vectors of 16),
// cells in groups of 4; the bank is packed for that loop (nePack).
enum { neBlockEntries = 64, neRowsPerTask = 128 };

typedef struct {
	const void *const *api;
	pthread_mutex_t mu;
	// The packed bank, built on the first run from the int8 entries'
	// constant input at packedFrom.
	const int8_t *packedFrom;
	int8_t *packed;  // [Gp/16][Dp/4][16][4]
	int32_t *colsum; // [Gp] Σ_c entry values (for the zero point)
	float *bias;     // [Gp] ‖g‖², FLT_MAX for the padding entries
	int64_t D, Dp, G, Gp;
	// scratch holds the quantised cells between runs (scratchLen bytes);
	// a run takes it under mu, so that concurrent runs never share it.
	uint8_t *scratch;
	size_t scratchLen;
} neKernel;

// neTask is one run's shared state for the parallel loop.
typedef struct {
	const neKernel *k;
	const float *x;  // [D][n] channel-major features
	uint8_t *q;      // [n][Dp] quantised, cell-major
	float *out;      // [n] distances
	int64_t n;
	float xscale, alpha;
	int zp;
} neTask;

static void *neCreateKernel(const neCustomOp *op, const void *api, const void *info) {
	(void)op;
	(void)info;
	neKernel *k = (neKernel *)calloc(1, sizeof(neKernel));
	if (!k) return NULL;
	k->api = (const void *const *)api;
	pthread_mutex_init(&k->mu, NULL);
	return k;
}

static void neKernelDestroy(void *p) {
	neKernel *k = (neKernel *)p;
	if (!k) return;
	pthread_mutex_destroy(&k->mu);
	free(k->packed);
	free(k->colsum);
	free(k->bias);
	free(k->scratch);
	free(k);
}

static const char *neGetName(const neCustomOp *op) {
	(void)op;
	return NE_OP_NAME;
}

static const char *neGetProvider(const neCustomOp *op) {
	(void)op;
	return "CPUExecutionProvider";
}

// Inputs: features float [1,D,h,w], entries int8 [D,G], ‖g‖² float [G],
// the entries' step times −2 float [1]. Output: distances float [1,1,h,w].
static int neGetInputType(const neCustomOp *op, size_t i) {
	(void)op;
	return i == 1 ? neInt8 : neFloat;
}
static size_t neGetInputTypeCount(const neCustomOp *op) {
	(void)op;
	return 4;
}
static int neGetOutputType(const neCustomOp *op, size_t i) {
	(void)op;
	(void)i;
	return neFloat;
}
static size_t neGetOutputTypeCount(const neCustomOp *op) {
	(void)op;
	return 1;
}

// Every input and output is required, in CPU memory, not variadic.
static int neRequired(const neCustomOp *op, size_t i) {
	(void)op;
	(void)i;
	return 0; // INPUT_OUTPUT_REQUIRED, OrtMemTypeDefault
}
static int neOne(const neCustomOp *op) {
	(void)op;
	return 1;
}
static int neLastVersion(const neCustomOp *op) {
	(void)op;
	return INT_MAX;
}
static size_t neNoIndices(int **inputIndex, int **outputIndex) {
	*inputIndex = NULL;
	*outputIndex = NULL;
	return 0;
}
static void neReleaseIndices(int *inputIndex, int *outputIndex) {
	(void)inputIndex;
	(void)outputIndex;
}

static void neCompute(void *kernel, void *context);

static const neCustomOp neOp = {
	NE_API_VERSION,
	neCreateKernel,
	neGetName,
	neGetProvider,
	neGetInputType,
	neGetInputTypeCount,
	neGetOutputType,
	neGetOutputTypeCount,
	neCompute,
	neKernelDestroy,
	neRequired,
	neRequired,
	neRequired,
	neOne,
	neOne,
	neOne,
	neOne,
	NULL,
	NULL,
	NULL,
	neOne,
	neLastVersion,
	neNoIndices,
	neReleaseIndices,
	neNoIndices,
	neReleaseIndices,
};

int neSupported(void) {
#if defined(__x86_64__)
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
	       __builtin_cpu_supports("avx512vnni");
#else
	return 0;
#endif
}

// neStatus copies a failed call's message into err and releases it.
static int neStatus(const void *const *api, OrtStatusT *st, char *err, size_t errLen) {
	if (!st) return 0;
	const char *msg = ((neErrorMessageFn)api[neSlotGetErrorMessage])(st);
	snprintf(err, errLen, "%s", msg ? msg : "unknown error");
	((neReleaseStatusFn)api[neSlotReleaseStatus])(st);
	return 1;
}

int neNewDomain(void *handle, uint32_t apiVersion, void **domain, char *err, size_t errLen) {
	typedef struct {
		const void *(*GetApi)(uint32_t version);
		const char *(*GetVersionString)(void);
	} apiBase;
	apiBase *(*getBase)(void) = (apiBase * (*)(void)) dlsym(handle, "OrtGetApiBase");
	if (!getBase) {
		snprintf(err, errLen, "no OrtGetApiBase");
		return 1;
	}
	const void *const *api = (const void *const *)getBase()->GetApi(apiVersion);
	if (!api) {
		snprintf(err, errLen, "the library does not serve API version %u", apiVersion);
		return 1;
	}
	void *d = NULL;
	if (neStatus(api, ((neCreateDomainFn)api[neSlotCreateCustomOpDomain])(NE_DOMAIN, &d), err, errLen)) return 1;
	if (neStatus(api, ((neDomainAddFn)api[neSlotCustomOpDomainAdd])(d, &neOp), err, errLen)) return 1;
	*domain = d;
	return 0;
}

int neAddDomain(void *handle, uint32_t apiVersion, void *sessionOptions, void *domain, char *err, size_t errLen) {
	typedef struct {
		const void *(*GetApi)(uint32_t version);
	} apiBase;
	apiBase *(*getBase)(void) = (apiBase * (*)(void)) dlsym(handle, "OrtGetApiBase");
	if (!getBase) {
		snprintf(err, errLen, "no OrtGetApiBase");
		return 1;
	}
	const void *const *api = (const void *const *)getBase()->GetApi(apiVersion);
	if (!api) {
		snprintf(err, errLen, "the library does not serve API version %u", apiVersion);
		return 1;
	}
	return neStatus(api, ((neAddDomainFn)api[neSlotAddCustomOpDomain])(sessionOptions, domain), err, errLen);
}

// nePack lays the int8 entries [D][G] out for neRows: blocks of 16
// entries, each [Dp/4][16][4] (four consecutive channels of one entry in
// one 32-bit lane), padded with zero channels to Dp and with zero entries
// (bias FLT_MAX: never the nearest) to Gp.
static int nePack(neKernel *k, const int8_t *w, const float *gsq, int64_t D, int64_t G) {
	int64_t Dp = (D + 3) / 4 * 4, Gp = (G + neBlockEntries - 1) / neBlockEntries * neBlockEntries;
	int8_t *packed = (int8_t *)aligned_alloc(64, (size_t)(Gp * Dp));
	int32_t *colsum = (int32_t *)aligned_alloc(64, (size_t)Gp * sizeof(int32_t));
	float *bias = (float *)aligned_alloc(64, (size_t)Gp * sizeof(float));
	if (!packed || !colsum || !bias) {
		free(packed);
		free(colsum);
		free(bias);
		return 1;
	}
	memset(packed, 0, (size_t)(Gp * Dp));
	for (int64_t j = 0; j < Gp; j++) {
		int32_t s = 0;
		if (j < G) {
			int64_t b = j / 16, e = j % 16;
			for (int64_t c = 0; c < D; c++) {
				int8_t v = w[c * G + j];
				packed[((b * (Dp / 4) + c / 4) * 16 + e) * 4 + c % 4] = v;
				s += v;
			}
		}
		colsum[j] = s;
		bias[j] = j < G ? gsq[j] : FLT_MAX;
	}
	free(k->packed);
	free(k->colsum);
	free(k->bias);
	k->packed = packed;
	k->colsum = colsum;
	k->bias = bias;
	k->packedFrom = w;
	k->D = D, k->Dp = Dp, k->G = G, k->Gp = Gp;
	return 0;
}

// roundHalfEven rounds v to the nearest integer, ties to even, as ONNX
// Runtime's quantisation does.
static float roundHalfEven(float v) { return nearbyintf(v); }

#if defined(__x86_64__)

// neRows sets out[r] for r in [r0,r1) to the minimum over all entries j of
// bias_j + alpha·Σ_c (q_rc − zp)·w_jc, keeping a running minimum instead
// of the [cells × entries] products. Entries are taken 64 at a time (a
// 64·Dp-byte block, in L1), cells 4 at a time: 16 vector accumulators.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void
neRows(const neKernel *k, const uint8_t *q, int zp, float alpha, int64_t r0, int64_t r1, float *out) {
	const int64_t Dp = k->Dp, steps = Dp / 4;
	const __m512 va = _mm512_set1_ps(alpha);
	const __m512i vzp = _mm512_set1_epi32(zp);
	for (int64_t r = r0; r < r1; r++) out[r] = FLT_MAX;
	for (int64_t e0 = 0; e0 < k->Gp; e0 += neBlockEntries) {
		const int8_t *gb = k->packed + e0 * Dp;
		const int8_t *g0 = gb, *g1 = gb + 16 * Dp, *g2 = gb + 32 * Dp, *g3 = gb + 48 * Dp;
		__m512i cs[4];
		__m512 bias[4];
		for (int i = 0; i < 4; i++) {
			cs[i] = _mm512_mullo_epi32(vzp, _mm512_load_si512(k->colsum + e0 + 16 * i));
			bias[i] = _mm512_load_ps(k->bias + e0 + 16 * i);
		}
		int64_t r = r0;
		for (; r + 4 <= r1; r += 4) {
			__m512i a00 = _mm512_setzero_si512(), a01 = a00, a02 = a00, a03 = a00;
			__m512i a10 = a00, a11 = a00, a12 = a00, a13 = a00;
			__m512i a20 = a00, a21 = a00, a22 = a00, a23 = a00;
			__m512i a30 = a00, a31 = a00, a32 = a00, a33 = a00;
			const uint8_t *q0 = q + r * Dp, *q1 = q0 + Dp, *q2 = q1 + Dp, *q3 = q2 + Dp;
			for (int64_t s = 0; s < steps; s++) {
				__m512i w0 = _mm512_loadu_si512(g0 + s * 64), w1 = _mm512_loadu_si512(g1 + s * 64);
				__m512i w2 = _mm512_loadu_si512(g2 + s * 64), w3 = _mm512_loadu_si512(g3 + s * 64);
				int32_t v;
				__m512i b;
				memcpy(&v, q0 + 4 * s, 4);
				b = _mm512_set1_epi32(v);
				a00 = _mm512_dpbusd_epi32(a00, b, w0), a01 = _mm512_dpbusd_epi32(a01, b, w1);
				a02 = _mm512_dpbusd_epi32(a02, b, w2), a03 = _mm512_dpbusd_epi32(a03, b, w3);
				memcpy(&v, q1 + 4 * s, 4);
				b = _mm512_set1_epi32(v);
				a10 = _mm512_dpbusd_epi32(a10, b, w0), a11 = _mm512_dpbusd_epi32(a11, b, w1);
				a12 = _mm512_dpbusd_epi32(a12, b, w2), a13 = _mm512_dpbusd_epi32(a13, b, w3);
				memcpy(&v, q2 + 4 * s, 4);
				b = _mm512_set1_epi32(v);
				a20 = _mm512_dpbusd_epi32(a20, b, w0), a21 = _mm512_dpbusd_epi32(a21, b, w1);
				a22 = _mm512_dpbusd_epi32(a22, b, w2), a23 = _mm512_dpbusd_epi32(a23, b, w3);
				memcpy(&v, q3 + 4 * s, 4);
				b = _mm512_set1_epi32(v);
				a30 = _mm512_dpbusd_epi32(a30, b, w0), a31 = _mm512_dpbusd_epi32(a31, b, w1);
				a32 = _mm512_dpbusd_epi32(a32, b, w2), a33 = _mm512_dpbusd_epi32(a33, b, w3);
			}
			__m512i acc[4][4] = {{a00, a01, a02, a03}, {a10, a11, a12, a13}, {a20, a21, a22, a23}, {a30, a31, a32, a33}};
			for (int i = 0; i < 4; i++) {
				__m512 m = _mm512_set1_ps(FLT_MAX);
				for (int j = 0; j < 4; j++) {
					__m512i d = _mm512_sub_epi32(acc[i][j], cs[j]);
					m = _mm512_min_ps(m, _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), va, bias[j]));
				}
				float mm = _mm512_reduce_min_ps(m);
				if (mm < out[r + i]) out[r + i] = mm;
			}
		}
		for (; r < r1; r++) {
			const uint8_t *qr = q + r * Dp;
			__m512 m = _mm512_set1_ps(FLT_MAX);
			for (int j = 0; j < 4; j++) {
				__m512i a = _mm512_setzero_si512();
				for (int64_t s = 0; s < steps; s++) {
					int32_t v;
					memcpy(&v, qr + 4 * s, 4);
					a = _mm512_dpbusd_epi32(a, _mm512_set1_epi32(v), _mm512_loadu_si512(gb + j * 16 * Dp + s * 64));
				}
				__m512i d = _mm512_sub_epi32(a, cs[j]);
				m = _mm512_min_ps(m, _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), va, bias[j]));
			}
			float mm = _mm512_reduce_min_ps(m);
			if (mm < out[r]) out[r] = mm;
		}
	}
}

// neQuantise writes cells [r0,r1) of the features quantised as
// DynamicQuantizeLinear does (x/step rounded half to even, plus the zero
// point, clamped to 0..255; the padding channels get the zero point) into
// the cell-major t->q, and each cell's ‖x‖² (of the float features) into
// xsq[r−r0]. Sixteen cells at a time: four channels of each make one
// 32-bit word of its row, scattered with the row stride.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) static void
neQuantise(const neTask *t, int64_t r0, int64_t r1, float *xsq) {
	const neKernel *k = t->k;
	const __m512 vscale = _mm512_set1_ps(t->xscale);
	const __m512i vzp = _mm512_set1_epi32(t->zp), v0 = _mm512_setzero_si512(), v255 = _mm512_set1_epi32(255);
	const __m512i stride = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
						  _mm512_set1_epi32((int)k->Dp));
	for (int64_t r = r0; r < r1; r += 16) {
		__mmask16 m = r1 - r >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (r1 - r)) - 1);
		__m512 sq = _mm512_setzero_ps();
		for (int64_t c = 0; c < k->Dp; c += 4) {
			__m512i word = v0;
			for (int i = 0; i < 4; i++) {
				__m512i qi = vzp;
				if (c + i < k->D) {
					__m512 v = _mm512_maskz_loadu_ps(m, t->x + (c + i) * t->n + r);
					sq = _mm512_fmadd_ps(v, v, sq);
					qi = _mm512_add_epi32(_mm512_cvtps_epi32(_mm512_div_ps(v, vscale)), vzp);
					qi = _mm512_min_epi32(_mm512_max_epi32(qi, v0), v255);
				}
				word = _mm512_or_si512(word, _mm512_slli_epi32(qi, 8 * i));
			}
			_mm512_mask_i32scatter_epi32(t->q + r * k->Dp + c, m, stride, word, 1);
		}
		float lanes[16];
		_mm512_storeu_ps(lanes, sq);
		for (int64_t i = 0; i < 16 && r + i < r1; i++) xsq[r + i - r0] = lanes[i];
	}
}

// neRange widens [*lo, *hi] to hold the len values at x.
__attribute__((target("avx512f"))) static void neRange(const float *x, int64_t len, float *lo, float *hi) {
	__m512 l0 = _mm512_set1_ps(*lo), l1 = l0, h0 = _mm512_set1_ps(*hi), h1 = h0;
	int64_t i = 0;
	for (; i + 32 <= len; i += 32) {
		__m512 a = _mm512_loadu_ps(x + i), b = _mm512_loadu_ps(x + i + 16);
		l0 = _mm512_min_ps(l0, a), l1 = _mm512_min_ps(l1, b);
		h0 = _mm512_max_ps(h0, a), h1 = _mm512_max_ps(h1, b);
	}
	float l = _mm512_reduce_min_ps(_mm512_min_ps(l0, l1)), h = _mm512_reduce_max_ps(_mm512_max_ps(h0, h1));
	for (; i < len; i++) {
		l = x[i] < l ? x[i] : l;
		h = x[i] > h ? x[i] : h;
	}
	*lo = l, *hi = h;
}

#else

static void neRange(const float *x, int64_t len, float *lo, float *hi) {
	for (int64_t i = 0; i < len; i++) {
		*lo = x[i] < *lo ? x[i] : *lo;
		*hi = x[i] > *hi ? x[i] : *hi;
	}
}

static void neQuantise(const neTask *t, int64_t r0, int64_t r1, float *xsq) {
	(void)t;
	for (int64_t r = r0; r < r1; r++) xsq[r - r0] = NAN;
}

static void neRows(const neKernel *k, const uint8_t *q, int zp, float alpha, int64_t r0, int64_t r1, float *out) {
	(void)k, (void)q, (void)zp, (void)alpha;
	for (int64_t r = r0; r < r1; r++) out[r] = NAN;
}

#endif

// neRun quantises cells [r0,r1) of the features, finds each one's nearest
// entry and writes its distance √max(0, ‖x‖² + min_j(‖g_j‖² − 2·x̂·ĝ_j)).
static void neRun(void *p, size_t task) {
	neTask *t = (neTask *)p;
	const neKernel *k = t->k;
	int64_t r0 = (int64_t)task * neRowsPerTask, r1 = r0 + neRowsPerTask;
	if (r1 > t->n) r1 = t->n;
	float xsq[neRowsPerTask];
	neQuantise(t, r0, r1, xsq);
	neRows(k, t->q, t->zp, t->alpha, r0, r1, t->out);
	for (int64_t r = r0; r < r1; r++) {
		float d = xsq[r - r0] + t->out[r];
		t->out[r] = sqrtf(d > 0 ? d : 0);
	}
}

// neShape reads a tensor value's dims into dims (at most 4); it returns
// the count, or -1.
static int neShape(const void *const *api, const void *value, int64_t *dims) {
	void *info = NULL;
	if (((neTypeShapeFn)api[neSlotGetTensorTypeAndShape])(value, &info)) return -1;
	size_t n = 0;
	int bad = ((neDimsCountFn)api[neSlotGetDimensionsCount])(info, &n) != NULL || n > 4 ||
		  ((neDimsFn)api[neSlotGetDimensions])(info, dims, n) != NULL;
	((neReleaseInfoFn)api[neSlotReleaseTensorTypeAndShapeInfo])(info);
	return bad ? -1 : (int)n;
}

// neFail fills the output with NaN: the version-1 operator interface has
// no error return, and NaN distances fail every check downstream.
static void neFail(float *out, int64_t n) {
	for (int64_t i = 0; i < n; i++) out[i] = NAN;
}

static void neCompute(void *kernel, void *context) {
	neKernel *k = (neKernel *)kernel;
	const void *const *api = k->api;
	const void *in[4];
	for (size_t i = 0; i < 4; i++) {
		if (((neGetInputFn)api[neSlotKernelContextGetInput])(context, i, &in[i]) || !in[i]) return;
	}
	int64_t xd[4], wd[4];
	if (neShape(api, in[0], xd) != 4 || neShape(api, in[1], wd) != 2) return;
	int64_t D = xd[1], n = xd[2] * xd[3], G = wd[1];
	int64_t od[4] = {1, 1, xd[2], xd[3]};
	void *outValue = NULL;
	float *out = NULL;
	if (((neGetOutputFn)api[neSlotKernelContextGetOutput])(context, 0, od, 4, &outValue) || !outValue ||
	    ((neGetDataFn)api[neSlotGetTensorMutableData])(outValue, (void **)&out))
		return;
	const float *x, *gsq, *scale;
	const int8_t *w;
	if (((neGetDataFn)api[neSlotGetTensorMutableData])((void *)in[0], (void **)&x) ||
	    ((neGetDataFn)api[neSlotGetTensorMutableData])((void *)in[1], (void **)&w) ||
	    ((neGetDataFn)api[neSlotGetTensorMutableData])((void *)in[2], (void **)&gsq) ||
	    ((neGetDataFn)api[neSlotGetTensorMutableData])((void *)in[3], (void **)&scale) || xd[0] != 1 ||
	    wd[0] != D || n <= 0 || G <= 0) {
		neFail(out, n);
		return;
	}
	pthread_mutex_lock(&k->mu);
	int bad = 0;
	if (k->packedFrom != w || k->D != D || k->G != G) bad = nePack(k, w, gsq, D, G);
	size_t qLen = (size_t)((n * k->Dp + 63) / 64 * 64);
	uint8_t *q = NULL;
	if (k->scratch && k->scratchLen == qLen) {
		q = k->scratch;
		k->scratch = NULL;
	}
	pthread_mutex_unlock(&k->mu);
	if (!q && !bad) q = (uint8_t *)aligned_alloc(64, qLen);
	if (bad || !q) {
		free(q);
		neFail(out, n);
		return;
	}
	// DynamicQuantizeLinear's parameters, as ONNX Runtime computes them:
	// the range including 0, a step of range/255, the zero point where 0
	// falls (rounded half to even).
	float lo = 0, hi = 0;
	neRange(x, D * n, &lo, &hi);
	float xscale = hi == lo ? 1.0f : (hi - lo) / 255.0f;
	float z = 0.0f - lo / xscale;
	z = z < 0 ? 0 : z > 255 ? 255 : z;
	neTask t = {k, x, q, out, n, xscale, xscale * scale[0], (int)roundHalfEven(z)};
	size_t tasks = (size_t)((n + neRowsPerTask - 1) / neRowsPerTask);
	OrtStatusT *st = ((neParallelForFn)api[neSlotKernelContextParallelFor])(context, neRun, tasks, 0, &t);
	if (st) {
		// No thread pool to share the work: run it on this thread.
		((neReleaseStatusFn)api[neSlotReleaseStatus])(st);
		for (size_t i = 0; i < tasks; i++) neRun(&t, i);
	}
	pthread_mutex_lock(&k->mu);
	if (!k->scratch) {
		k->scratch = q, k->scratchLen = qLen;
		q = NULL;
	}
	pthread_mutex_unlock(&k->mu);
	free(q);
}
