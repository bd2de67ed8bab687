/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A main() for the fuzz targets without libFuzzer: run
 * LLVMFuzzerTestOneInput once on every file named on the command line or
 * found (not recursively) in a named directory, in name order. It makes
 * the committed corpora and crash reproducers regression tests of every
 * build, whatever the compiler and sanitizer. A missing or empty argument
 * fails, so a wrong corpus path cannot pass silently.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Each input in a heap block of exactly its size, as libFuzzer passes it,
 * so ASan sees a read past the end. */
static int run_file(const char *path)
{
	FILE *f = fopen(path, "rb");
	struct stat sb;

	if (!f || fstat(fileno(f), &sb) != 0) {
		fprintf(stderr, "replay_corpus: cannot read %s: %s\n", path, strerror(errno));
		if (f)
			fclose(f);
		return -1;
	}
	const size_t size = (size_t)sb.st_size;
	uint8_t *data = malloc(size ? size : 1);
	if (!data || fread(data, 1, size, f) != size) {
		fprintf(stderr, "replay_corpus: cannot read %s\n", path);
		free(data);
		fclose(f);
		return -1;
	}
	fclose(f);
	LLVMFuzzerTestOneInput(data, size);
	free(data);
	return 0;
}

static int by_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Run every regular file of dir; returns how many, or -1. */
static long run_dir(const char *dir)
{
	DIR *d = opendir(dir);
	char **names = NULL;
	size_t n = 0, cap = 0;
	long ran = 0;
	struct dirent *e;

	if (!d) {
		fprintf(stderr, "replay_corpus: cannot open %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			char **grown = realloc(names, cap * sizeof(*names));
			if (!grown)
				abort();
			names = grown;
		}
		if (!(names[n] = strdup(e->d_name)))
			abort();
		n++;
	}
	closedir(d);
	qsort(names, n, sizeof(*names), by_name);
	for (size_t i = 0; i < n; i++) {
		char path[4096];
		struct stat sb;
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		if (stat(path, &sb) == 0 && S_ISREG(sb.st_mode)) {
			if (run_file(path) != 0)
				ran = -1;
			else if (ran >= 0)
				ran++;
		}
		free(names[i]);
	}
	free(names);
	return ran;
}

int main(int argc, char **argv)
{
	long total = 0;

	if (argc < 2) {
		fprintf(stderr, "usage: %s DIR_OR_FILE...\n", argv[0]);
		return 2;
	}
	for (int i = 1; i < argc; i++) {
		struct stat sb;
		long ran;
		if (stat(argv[i], &sb) != 0) {
			fprintf(stderr, "replay_corpus: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		ran = S_ISDIR(sb.st_mode) ? run_dir(argv[i]) : (run_file(argv[i]) == 0 ? 1 : -1);
		if (ran <= 0) {
			fprintf(stderr, "replay_corpus: %s: no input could be run\n", argv[i]);
			return 1;
		}
		total += ran;
	}
	printf("replay_corpus: %ld inputs ran\n", total);
	return 0;
}
