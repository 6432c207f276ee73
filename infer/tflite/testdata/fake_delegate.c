// A stand-in for an NPU vendor's external delegate (TFLite's plugin ABI).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void logs(const char *s) {
	const char *p = getenv("FAKE_TFLITE_LOG");
	FILE *f = p ? fopen(p, "a") : NULL;
	if (!f) return;
	fprintf(f, "%s\n", s);
	fclose(f);
}

void *tflite_plugin_create_delegate(char **keys, char **values, size_t n, void (*report_error)(const char *)) {
	char line[512] = "external";
	for (size_t i = 0; i < n; i++) {
		strncat(line, " ", sizeof line - strlen(line) - 1);
		strncat(line, keys[i], sizeof line - strlen(line) - 1);
		strncat(line, "=", sizeof line - strlen(line) - 1);
		strncat(line, values[i], sizeof line - strlen(line) - 1);
	}
	logs(line);
	if (report_error == NULL) return NULL;
	return strdup("external");
}
void tflite_plugin_destroy_delegate(void *d) { logs("delete external"); free(d); }
