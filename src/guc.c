/*-------------------------------------------------------------------------
 *
 * guc.c
 *	  The atlas_users.* settings: their definitions, checks and the
 *	  reading of secrets from inline settings or from key files.
 *
 * Every setting is PGC_SUSET.  Secrets are GUC_SUPERUSER_ONLY and
 * GUC_NO_SHOW_ALL, and their show hook prints a mask, so that not even
 * members of pg_read_all_settings can read them back.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

#include <ctype.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"

char	   *atlas_base_url = NULL;
char	   *atlas_ca_file = NULL;
char	   *atlas_public_key = NULL;
char	   *atlas_private_key = NULL;
char	   *atlas_private_key_file = NULL;
char	   *atlas_client_id = NULL;
char	   *atlas_client_secret = NULL;
char	   *atlas_client_secret_file = NULL;
int			atlas_auth_method = ATLAS_AUTH_AUTO;
char	   *atlas_api_version = NULL;
int			atlas_timeout_ms = 30000;
int			atlas_connect_timeout_ms = 10000;
int			atlas_max_concurrency = 8;
int			atlas_max_retries = 0;
int			atlas_max_attempts = 5;
int			atlas_page_size = 500;
int			atlas_retry_base_ms = 1000;
int			atlas_queue_retention_s = 7 * 24 * 3600;
char	   *atlas_database = NULL;

/* the largest key file we read */
#define ATLAS_MAX_SECRET_FILE 8192

static const struct config_enum_entry auth_method_options[] = {
	{"auto", ATLAS_AUTH_AUTO, false},
	{"digest", ATLAS_AUTH_DIGEST, false},
	{"service_account", ATLAS_AUTH_SERVICE_ACCOUNT, false},
	{NULL, 0, false}
};

/* Show a secret as a mask: set or not, never its value. */
static const char *
show_secret(const char *value)
{
	return (value && value[0]) ? "********" : "";
}

static const char *
show_private_key(void)
{
	return show_secret(atlas_private_key);
}

static const char *
show_client_secret(void)
{
	return show_secret(atlas_client_secret);
}

/* Check atlas_users.base_url: https, or http to a loopback host only. */
static bool
check_base_url(char **newval, void **extra pg_attribute_unused(),
			   GucSource source pg_attribute_unused())
{
	char	   *why = NULL;

	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("atlas_users.base_url must not be empty.");
		return false;
	}
	if (!http_base_url_ok(*newval, &why))
	{
		GUC_check_errdetail("%s", why);
		GUC_check_errhint("Use https://cloud.mongodb.com, or an http:// URL on a loopback host for tests.");
		return false;
	}
	return true;
}

/* Check atlas_users.api_version: empty, or a real date as YYYY-MM-DD. */
static bool
check_api_version(char **newval, void **extra pg_attribute_unused(),
				  GucSource source pg_attribute_unused())
{
	const char *v = *newval;
	int			y,
				m,
				d;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (v == NULL || v[0] == '\0')
		return true;
	if (strlen(v) != 10 || v[4] != '-' || v[7] != '-' ||
		!isdigit((unsigned char) v[0]) || !isdigit((unsigned char) v[1]) ||
		!isdigit((unsigned char) v[2]) || !isdigit((unsigned char) v[3]) ||
		!isdigit((unsigned char) v[5]) || !isdigit((unsigned char) v[6]) ||
		!isdigit((unsigned char) v[8]) || !isdigit((unsigned char) v[9]))
	{
		GUC_check_errdetail("atlas_users.api_version must be a date in the form YYYY-MM-DD, or empty.");
		return false;
	}
	/* the digits were checked above, so strtol cannot fail here */
	y = (int) strtol(v, NULL, 10);
	m = (int) strtol(v + 5, NULL, 10);
	d = (int) strtol(v + 8, NULL, 10);
	if (y < 2000 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1] ||
		(m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
	{
		GUC_check_errdetail("\"%s\" is not a valid date.", v);
		return false;
	}
	return true;
}

/* Define every atlas_users.* setting and reserve the prefix. */
void
atlas_define_settings(void)
{
	DefineCustomStringVariable("atlas_users.base_url",
							   "Base URL of the Atlas Administration API.",
							   "Must be https, except for loopback hosts.",
							   &atlas_base_url,
							   "https://cloud.mongodb.com",
							   PGC_SUSET, 0,
							   check_base_url, NULL, NULL);

	DefineCustomStringVariable("atlas_users.ca_file",
							   "File of CA certificates that verify the Atlas server, instead of the system store.",
							   NULL,
							   &atlas_ca_file,
							   "",
							   PGC_SUSET, 0,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.public_key",
							   "Public key of the Atlas programmatic API key (digest authentication).",
							   NULL,
							   &atlas_public_key,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.private_key",
							   "Private key of the Atlas programmatic API key. Prefer atlas_users.private_key_file.",
							   NULL,
							   &atlas_private_key,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, show_private_key);

	DefineCustomStringVariable("atlas_users.private_key_file",
							   "File holding the private key; owned by the server's OS user, mode 0600 or 0400.",
							   NULL,
							   &atlas_private_key_file,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.client_id",
							   "Client id of the Atlas service account (OAuth client credentials).",
							   NULL,
							   &atlas_client_id,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.client_secret",
							   "Client secret of the Atlas service account. Prefer atlas_users.client_secret_file.",
							   NULL,
							   &atlas_client_secret,
							   "",
							   PGC_SUSET,
							   GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL | GUC_NOT_IN_SAMPLE,
							   NULL, NULL, show_client_secret);

	DefineCustomStringVariable("atlas_users.client_secret_file",
							   "File holding the client secret; owned by the server's OS user, mode 0600 or 0400.",
							   NULL,
							   &atlas_client_secret_file,
							   "",
							   PGC_SUSET, GUC_SUPERUSER_ONLY,
							   NULL, NULL, NULL);

	DefineCustomEnumVariable("atlas_users.auth_method",
							 "How to authenticate: auto, digest or service_account.",
							 "auto uses the service account when atlas_users.client_id is set, digest keys otherwise.",
							 &atlas_auth_method,
							 ATLAS_AUTH_AUTO,
							 auth_method_options,
							 PGC_SUSET, 0,
							 NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.api_version",
							   "Pins the Atlas resource version (YYYY-MM-DD) of every v2 call; empty uses each operation's current version.",
							   NULL,
							   &atlas_api_version,
							   "",
							   PGC_SUSET, 0,
							   check_api_version, NULL, NULL);

	DefineCustomIntVariable("atlas_users.timeout_ms",
							"Time limit of one HTTP request, connection included.",
							NULL,
							&atlas_timeout_ms,
							30000, 100, 3600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.connect_timeout_ms",
							"Time limit to connect to Atlas, TLS handshake included.",
							NULL,
							&atlas_connect_timeout_ms,
							10000, 100, 600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.max_concurrency",
							"Most Atlas requests in flight at once for bulk removal and the queue worker.",
							NULL,
							&atlas_max_concurrency,
							8, 1, ATLAS_MAX_CONCURRENCY,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.max_retries",
							"How often a synchronous call retries an answer of 429 or 503, waiting Retry-After.",
							NULL,
							&atlas_max_retries,
							0, 0, 10,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.page_size",
							"Items per page when reading Atlas lists (itemsPerPage).",
							NULL,
							&atlas_page_size,
							500, 1, 500,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.max_attempts",
							"How many times the queue tries a removal before marking it failed.",
							"Only 429, 5xx and transport failures are retried.",
							&atlas_max_attempts,
							5, 1, 100,
							PGC_SUSET, 0,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.retry_base_ms",
							"First delay of the queue's exponential backoff; never shorter than Retry-After.",
							NULL,
							&atlas_retry_base_ms,
							1000, 10, 3600000,
							PGC_SUSET, GUC_UNIT_MS,
							NULL, NULL, NULL);

	DefineCustomIntVariable("atlas_users.queue_retention",
							"How long finished queue rows are kept before the worker deletes them; 0 keeps them forever.",
							NULL,
							&atlas_queue_retention_s,
							7 * 24 * 3600, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S,
							NULL, NULL, NULL);

	DefineCustomStringVariable("atlas_users.database",
							   "Database the background worker connects to.",
							   "Only with shared_preload_libraries = 'atlas_users'.",
							   &atlas_database,
							   "postgres",
	/* only the postmaster's value matters; it can be defined so only then */
							   process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP,
							   0,
							   NULL, NULL, NULL);

	MarkGUCPrefixReserved("atlas_users");
}

/* Read a secret from a key file, refusing files others could read; *stp gets its stat. */
static char *
read_secret_file(const char *setting, const char *path, struct stat *stp)
{
	int			fd;
	struct stat st;
	char		buf[ATLAS_MAX_SECRET_FILE + 1];
	ssize_t		n;
	size_t		len;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not open %s \"%s\": %m", setting, path)));
	if (fstat(fd, &st) != 0)
	{
		int			save_errno = errno;

		close(fd);
		errno = save_errno;
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not stat %s \"%s\": %m", setting, path)));
	}
	if (!S_ISREG(st.st_mode) || st.st_uid != geteuid() ||
		(st.st_mode & (S_IRWXG | S_IRWXO)) != 0)
	{
		close(fd);
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" is not safe to use", setting, path),
				 errdetail("The file must be a regular file owned by the database server's operating system user, with no group or other permissions."),
				 errhint("Run: chown <server user> \"%s\" && chmod 0600 \"%s\"", path, path)));
	}
	*stp = st;
	n = read(fd, buf, ATLAS_MAX_SECRET_FILE + 1);
	close(fd);
	if (n < 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("could not read %s \"%s\": %m", setting, path)));
	if (n > ATLAS_MAX_SECRET_FILE)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" is too large", setting, path),
				 errdetail("A key file holds one secret of at most %d bytes.", ATLAS_MAX_SECRET_FILE)));
	len = (size_t) n;
	while (len > 0 && isspace((unsigned char) buf[len - 1]))
		len--;
	buf[len] = '\0';
	if (len == 0 || memchr(buf, '\0', len) != NULL || strpbrk(buf, "\r\n") != NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s \"%s\" does not hold a single-line secret", setting, path)));
	return pstrdup(buf);
}

/* a key file's contents, kept while the file is unchanged */
typedef struct SecretFileCache
{
	char	   *path;			/* TopMemoryContext */
	char	   *secret;			/* TopMemoryContext */
	struct stat st;
} SecretFileCache;

static SecretFileCache secret_cache[2];

/*
 * Read a key file, or reuse what was read while the file is the same: one
 * stat() per call instead of open, fstat, read and close.  A change of
 * inode, size, mtime, mode or owner re-reads (and re-checks) the file.
 */
static char *
cached_secret_file(const char *setting, const char *path)
{
	SecretFileCache *c = &secret_cache[strcmp(setting, "atlas_users.private_key_file") == 0 ? 0 : 1];
	struct stat st;
	char	   *secret;

	if (c->path && strcmp(c->path, path) == 0 && stat(path, &st) == 0 &&
		st.st_ino == c->st.st_ino && st.st_dev == c->st.st_dev &&
		st.st_size == c->st.st_size && st.st_mode == c->st.st_mode &&
		st.st_uid == c->st.st_uid &&
		st.st_mtim.tv_sec == c->st.st_mtim.tv_sec &&
		st.st_mtim.tv_nsec == c->st.st_mtim.tv_nsec)
		return pstrdup(c->secret);

	secret = read_secret_file(setting, path, &st);
	if (c->secret)
	{
		explicit_bzero(c->secret, strlen(c->secret));
		pfree(c->secret);
	}
	if (c->path)
		pfree(c->path);
	c->path = MemoryContextStrdup(TopMemoryContext, path);
	c->secret = MemoryContextStrdup(TopMemoryContext, secret);
	c->st = st;
	return secret;
}

/*
 * Return the secret configured inline or in a file, palloc'd, or NULL when
 * neither is set.  Setting both is an error, so there is never a doubt
 * about which one is used.
 */
char *
atlas_secret_value(const char *inline_name, const char *inline_value,
				   const char *file_name, const char *file_path)
{
	bool		has_inline = inline_value && inline_value[0];
	bool		has_file = file_path && file_path[0];

	if (has_inline && has_file)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("both %s and %s are set", inline_name, file_name),
				 errhint("Set only %s, and reset %s.", file_name, inline_name)));
	if (has_file)
		return cached_secret_file(file_name, file_path);
	if (has_inline)
		return pstrdup(inline_value);
	return NULL;
}
