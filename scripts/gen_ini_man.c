/*
 * gen_ini_man.c — write cutmixd.ini(5) from man/cutmixd.ini.5.in and the
 * daemon's one options table (daemon/config_options.c), so the page cannot drift
 * from what the parser accepts.
 *
 *   gen_ini_man VERSION < man/cutmixd.ini.5.in > cutmixd.ini.5
 *
 * The template is roff with three directives, each alone on a line:
 *   @section NAME   start the keys of a table section ("server",
 *                   "security", "dataset", "pipeline.NAME")
 *   @key KEY        one key; the following lines are its description
 *   @end            end of the section
 * Each @key becomes a .TP entry with what the key takes, its default (and
 * eval default), and whether it is in the config digest, from the table.
 * @VERSION@ anywhere is replaced by VERSION. Exit status 1, with a message
 * naming the key, when the template documents a key the table does not
 * have, misses one that it has, or documents one twice; 2 on bad usage.
 */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define LINE_MAX_ 4096

static const char *version;
static int lineno;

/* Roff text from plain text: backslashes doubled into \e, a leading dot
 * or quote protected. */
static void roff_text(const char *s)
{
	if (*s == '.' || *s == '\'')
		fputs("\\&", stdout);
	for (; *s; s++) {
		if (*s == '\\')
			fputs("\\e", stdout);
		else if (*s == '-')
			fputs("\\-", stdout);
		else
			putchar(*s);
	}
}

static void emit_key(const struct config_option_doc *d)
{
	printf(".TP\n.B %s\n", d->key);
	fputs("Takes ", stdout);
	roff_text(d->takes);
	fputs(".\n", stdout);
	if (d->required) {
		fputs("Required.\n", stdout);
	} else if (d->def) {
		fputs("Default: \\fB", stdout);
		roff_text(d->def);
		fputs("\\fR", stdout);
		if (d->def_eval) {
			fputs(" (in an eval pipeline: \\fB", stdout);
			roff_text(d->def_eval);
			fputs("\\fR)", stdout);
		}
		fputs(".\n", stdout);
	} else {
		fputs("Unset by default.\n", stdout);
	}
	if (d->digest)
		fputs("Part of the config digest (it changes batch bytes).\n", stdout);
	if (d->aug)
		fputs("An augmentation key: refused in an eval pipeline.\n", stdout);
	printf(".IP\n"); /* the description follows, indented */
}

static int find(const char *section, const char *key, struct config_option_doc *d)
{
	for (int i = 0; i < config_option_count(); i++) {
		config_option_get(i, d);
		if (!strcmp(d->section, section) && !strcmp(d->key, key))
			return i;
	}
	return -1;
}

static void put_line(const char *line)
{
	const char *at;

	while ((at = strstr(line, "@VERSION@"))) {
		fwrite(line, 1, (size_t)(at - line), stdout);
		fputs(version, stdout);
		line = at + strlen("@VERSION@");
	}
	fputs(line, stdout);
}

int main(int argc, char **argv)
{
	char line[LINE_MAX_], section[64] = "";
	int n = config_option_count();
	char *seen = calloc((size_t)n, 1);
	struct config_option_doc d;
	bool in_section = false;

	if (argc != 2 || !seen) {
		fprintf(stderr, "usage: gen_ini_man VERSION < TEMPLATE > PAGE\n");
		return 2;
	}
	version = argv[1];
	while (fgets(line, sizeof(line), stdin)) {
		lineno++;
		line[strcspn(line, "\n")] = '\0';
		if (!strncmp(line, "@section ", 9)) {
			snprintf(section, sizeof(section), "%.63s", line + 9);
			in_section = true;
		} else if (!strncmp(line, "@key ", 5)) {
			int i = in_section ? find(section, line + 5, &d) : -1;

			if (i < 0) {
				fprintf(stderr, "gen_ini_man: line %d: [%s] %s: no such key in the options table (daemon/config_options.c)\n",
					lineno, section, line + 5);
				return 1;
			}
			if (seen[i]++) {
				fprintf(stderr, "gen_ini_man: line %d: [%s] %s: documented twice\n",
					lineno, section, line + 5);
				return 1;
			}
			emit_key(&d);
		} else if (!strcmp(line, "@end")) {
			in_section = false;
		} else {
			put_line(line);
			putchar('\n');
		}
	}
	for (int i = 0; i < n; i++) {
		if (seen[i])
			continue;
		config_option_get(i, &d);
		fprintf(stderr, "gen_ini_man: [%s] %s: in the options table but not documented in the template\n",
			d.section, d.key);
		return 1;
	}
	free(seen);
	return fflush(stdout) ? 1 : 0;
}
