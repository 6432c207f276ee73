// A stand-in for libtensorflowlite_c.so, built by the tests: it exports the
// C API symbols inspectd binds, with the same signatures, over a text
// "model" ("in|out NAME f32|i8 DIMS..." lines; for a real .tflite file,
// those of $FAKE_TFLITE_SPEC). Invoke computes, on NHWC
// input 0, heatmap[y,x] = 1*R + 2*G + 3*B, score = max(heatmap) and a
// transform of zeros, so a test can tell a wrong transposition. It refuses
// (Invoke fails) to run on another thread than the one that created the
// interpreter, and logs what it was asked to the file $FAKE_TFLITE_LOG.
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char name[64]; int dims[8]; int ndims; int type; float *data; size_t n; } tensor;
typedef struct { tensor in[4], out[4]; int nin, nout; } model;
typedef struct { int threads; void *delegate; } options;
typedef struct { model *m; pthread_t owner; } interp;

static void logf_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#include <stdarg.h>
static void logf_(const char *fmt, ...) {
	const char *p = getenv("FAKE_TFLITE_LOG");
	if (!p) return;
	FILE *f = fopen(p, "a");
	if (!f) return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(f, fmt, ap);
	va_end(ap);
	fputc('\n', f);
	fclose(f);
}

const char *TfLiteVersion(void) { return "fake-2.99"; }

void *TfLiteModelCreate(const void *data, size_t size) {
	model *m = calloc(1, sizeof *m);
	char *text, *save = NULL;
	// A real .tflite file (identifier "TFL3"): its interface comes from
	// $FAKE_TFLITE_SPEC, in the text form.
	if (size >= 8 && memcmp((const char *)data + 4, "TFL3", 4) == 0) {
		const char *spec = getenv("FAKE_TFLITE_SPEC");
		if (!spec) { free(m); return NULL; }
		text = strdup(spec);
	} else {
		text = strndup(data, size);
	}
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		char kind[8], name[64], type[8];
		int off = 0;
		if (sscanf(line, "%7s %63s %7s%n", kind, name, type, &off) != 3) { free(text); free(m); return NULL; }
		tensor *t = strcmp(kind, "in") == 0 ? &m->in[m->nin++] : &m->out[m->nout++];
		strcpy(t->name, name);
		t->type = strcmp(type, "f32") == 0 ? 1 : 9;
		t->n = 1;
		int d, k;
		while (sscanf(line + off, "%d%n", &d, &k) == 1) { t->dims[t->ndims++] = d; t->n *= d; off += k; }
	}
	free(text);
	return m;
}
void TfLiteModelDelete(void *m) { free(m); }

void *TfLiteInterpreterOptionsCreate(void) { return calloc(1, sizeof(options)); }
void TfLiteInterpreterOptionsSetNumThreads(void *o, int32_t n) { ((options *)o)->threads = n; }
void TfLiteInterpreterOptionsAddDelegate(void *o, void *d) { ((options *)o)->delegate = d; }
void TfLiteInterpreterOptionsDelete(void *o) { free(o); }

void *TfLiteInterpreterCreate(const void *mv, const void *ov) {
	const options *o = ov;
	logf_("create threads=%d delegate=%s", o->threads, o->delegate ? (char *)o->delegate : "none");
	if (o->delegate && getenv("FAKE_TFLITE_REFUSE_DELEGATE")) return NULL;
	interp *i = calloc(1, sizeof *i);
	i->m = (model *)mv;
	i->owner = pthread_self();
	return i;
}
int TfLiteInterpreterAllocateTensors(void *iv) {
	model *m = ((interp *)iv)->m;
	for (int k = 0; k < m->nin; k++) m->in[k].data = calloc(m->in[k].n, 4);
	for (int k = 0; k < m->nout; k++) m->out[k].data = calloc(m->out[k].n, 4);
	return 0;
}
int TfLiteInterpreterInvoke(void *iv) {
	interp *i = iv;
	if (!pthread_equal(i->owner, pthread_self())) { logf_("invoke on another thread"); return 1; }
	model *m = i->m;
	tensor *in = &m->in[0];
	int c = in->dims[3], hw = (int)in->n / c;
	float max = -1e30f;
	for (int k = 0; k < m->nout; k++) {
		tensor *t = &m->out[k];
		if ((int)t->n == hw) {
			for (int p = 0; p < hw; p++) {
				float v = 0;
				for (int ch = 0; ch < c; ch++) v += (ch + 1) * in->data[p * c + ch];
				t->data[p] = v;
				if (v > max) max = v;
			}
		}
	}
	for (int k = 0; k < m->nout; k++) {
		tensor *t = &m->out[k];
		if (t->n == 1) t->data[0] = max;
		if (t->n == 3) memset(t->data, 0, 12);
	}
	return 0;
}
int32_t TfLiteInterpreterGetInputTensorCount(const void *iv) { return ((const interp *)iv)->m->nin; }
int32_t TfLiteInterpreterGetOutputTensorCount(const void *iv) { return ((const interp *)iv)->m->nout; }
void *TfLiteInterpreterGetInputTensor(const void *iv, int32_t k) { return &((const interp *)iv)->m->in[k]; }
const void *TfLiteInterpreterGetOutputTensor(const void *iv, int32_t k) { return &((const interp *)iv)->m->out[k]; }
void TfLiteInterpreterDelete(void *iv) {
	interp *i = iv;
	logf_("delete interpreter");
	for (int k = 0; k < i->m->nin; k++) free(i->m->in[k].data);
	for (int k = 0; k < i->m->nout; k++) free(i->m->out[k].data);
	free(i);
}

int TfLiteTensorType(const void *t) { return ((const tensor *)t)->type; }
int32_t TfLiteTensorNumDims(const void *t) { return ((const tensor *)t)->ndims; }
int32_t TfLiteTensorDim(const void *t, int32_t k) { return ((const tensor *)t)->dims[k]; }
size_t TfLiteTensorByteSize(const void *t) { return ((const tensor *)t)->n * 4; }
void *TfLiteTensorData(const void *t) { return ((const tensor *)t)->data; }
const char *TfLiteTensorName(const void *t) { return ((const tensor *)t)->name; }
int TfLiteTensorCopyFromBuffer(void *tv, const void *src, size_t n) {
	tensor *t = tv;
	if (n != t->n * 4) return 1;
	memcpy(t->data, src, n);
	return 0;
}
int TfLiteTensorCopyToBuffer(const void *tv, void *dst, size_t n) {
	const tensor *t = tv;
	if (n != t->n * 4) return 1;
	memcpy(dst, t->data, n);
	return 0;
}

// XNNPACK's options as an older release declares them: smaller than the
// buffer inspectd passes, which is what the ABI allows.
typedef struct { int32_t num_threads; uint32_t flags; void *weights_cache; bool handle_variable_ops; } xnn_options;
xnn_options TfLiteXNNPackDelegateOptionsDefault(void) { xnn_options o = {1, 0, NULL, false}; return o; }
void *TfLiteXNNPackDelegateCreate(const xnn_options *o) {
	logf_("xnnpack threads=%d", o->num_threads);
	return strdup("xnnpack");
}
void TfLiteXNNPackDelegateDelete(void *d) { logf_("delete %s", (char *)d); free(d); }
