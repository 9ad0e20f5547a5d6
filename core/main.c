/* SPDX-License-Identifier: BSD-2-Clause */
/*
 * main.c - command line of pgvigil(8). Everything else is in daemon.c.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/conf.h"
#include "core/daemon.h"
#include "core/log.h"
#include "core/loop.h"
#include "vip/vip.h"

#define DEFAULT_CONF PGVIGIL_SYSCONFDIR "/pgvigil/pgvigil.conf"

static void
usage(FILE *out)
{
	fprintf(out,
		"pgvigil is a watchdog-clustered failover gateway for PostgreSQL.\n\n"
		"Usage:\n"
		"  pgvigil [-c FILE] [--id N]   run in the foreground\n"
		"  pgvigil -t [-c FILE]         check the configuration and exit\n"
		"  pgvigil --release-vip [-c FILE]\n"
		"                               remove the VIP a crashed daemon left\n\n"
		"Options:\n"
		"  -c, --config FILE   configuration file (default %s)\n"
		"  -i, --id N          run as [peer.N] instead of finding it by address\n"
		"  -t, --test          check the configuration: print \"configuration OK\"\n"
		"                      or every error as file:line: message (exit 2)\n"
		"      --dump-config   with -t: print the effective configuration\n"
		"      --list-settings print every setting the configuration accepts\n"
		"      --release-vip   remove this configuration's VIP from this host if it\n"
		"                      is tagged as pgvigil's (systemd ExecStopPost)\n"
		"  -v, --version       print the version and exit\n"
		"  -h, --help          print this help and exit\n\n"
		"See pgvigil(8) and pgvigil.conf(5).\n",
		DEFAULT_CONF);
}

int
main(int argc, char **argv)
{
	enum { OPT_DUMP = 256, OPT_LIST, OPT_RELEASE_VIP };
	static const struct option longopts[] = {
		{ "config", required_argument, NULL, 'c' },
		{ "id", required_argument, NULL, 'i' },
		{ "test", no_argument, NULL, 't' },
		{ "dump-config", no_argument, NULL, OPT_DUMP },
		{ "list-settings", no_argument, NULL, OPT_LIST },
		{ "release-vip", no_argument, NULL, OPT_RELEASE_VIP },
		{ "version", no_argument, NULL, 'v' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct daemon_opts opts = { .conf_path = DEFAULT_CONF };
	int test = 0, dump = 0, release_vip = 0, c;

	/*
	 * First of all: a SIGHUP or SIGTERM that arrives while the daemon
	 * starts waits for the loop (signalfd) instead of killing it.
	 */
	loop_block_signals();
	log_open("pgvigil", LOG_DEST_STDERR, LOG_LVL_INFO);
	while ((c = getopt_long(argc, argv, "c:i:tvh", longopts, NULL)) != -1) {
		switch (c) {
		case 'c':
			opts.conf_path = optarg;
			break;
		case 'i': {
			char *end;
			long long v;

			errno = 0;
			v = strtoll(optarg, &end, 10);
			if (errno || *end || v < 1 || v > CONF_MAX_ID) {
				fprintf(stderr, "pgvigil: invalid --id \"%s\": expected a number from 1 to %d\n",
					optarg, CONF_MAX_ID);
				return EXIT_CONFIG;
			}
			opts.forced_id = v;
			break;
		}
		case 't':
			test = 1;
			break;
		case OPT_DUMP:
			dump = 1;
			break;
		case OPT_LIST:
			conf_list_settings(stdout);
			return EXIT_OK;
		case OPT_RELEASE_VIP:
			release_vip = 1;
			break;
		case 'v':
			printf("pgvigil %s\n", PGVIGIL_VERSION);
			return EXIT_OK;
		case 'h':
			usage(stdout);
			return EXIT_OK;
		default:
			usage(stderr);
			return EXIT_CONFIG;
		}
	}
	if (optind < argc) {
		fprintf(stderr, "pgvigil: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return EXIT_CONFIG;
	}
	if (dump && !test) {
		fprintf(stderr, "pgvigil: --dump-config goes with -t\n");
		return EXIT_CONFIG;
	}
	if (release_vip && test) {
		fprintf(stderr, "pgvigil: --release-vip and -t do not go together\n");
		return EXIT_CONFIG;
	}
	if (release_vip) {
		struct conf_errors errs = { 0 };
		struct conf *conf = conf_load(opts.conf_path, &errs);
		char err[512];
		int n;

		if (!conf) {
			for (size_t i = 0; i < errs.n; i++)
				fprintf(stderr, "%s\n", errs.msgs[i]);
			conf_errors_clear(&errs);
			return EXIT_CONFIG;
		}
		n = vip_release_leftover(conf, err, sizeof(err));
		if (n < 0)
			log_error("could not release the VIP: %s", err);
		else if (n == 0)
			log_info("release-vip: no VIP of this configuration is on this host");
		conf_free(conf);
		return n < 0 ? EXIT_RUNTIME : EXIT_OK;
	}
	if (test) {
		struct conf_errors errs = { 0 };
		struct conf *conf = conf_load(opts.conf_path, &errs);

		if (!conf) {
			for (size_t i = 0; i < errs.n; i++)
				fprintf(stderr, "%s\n", errs.msgs[i]);
			conf_errors_clear(&errs);
			return EXIT_CONFIG;
		}
		if (dump)
			conf_dump(conf, stdout);
		printf("configuration OK\n");
		conf_free(conf);
		return EXIT_OK;
	}
	return daemon_main(&opts);
}
