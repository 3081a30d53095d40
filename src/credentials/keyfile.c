/*-------------------------------------------------------------------------
 *
 * keyfile.c
 *	  Secrets, inline in a setting or in a key file.
 *
 * A key file must be a regular file owned by the server's OS user with
 * no group or other permissions, and hold one single-line secret.  It is
 * read on first use and kept while it is unchanged (inode, size, mtime,
 * mode, owner): one stat() per call instead of open, fstat, read and
 * close.  Setting both the inline secret and its file is an error, so
 * there is never a doubt about which one is used.
 *
 *-------------------------------------------------------------------------
 */
#include "credentials/credentials.h"

#include <ctype.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "utils/memutils.h"

/* the largest key file we read */
#define ATLAS_MAX_SECRET_FILE 8192

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

/* key files kept at once: the settings' and user mappings' */
#define SECRET_FILES 8

static SecretFileCache secret_cache[SECRET_FILES];
static int	secret_cache_next = 0;	/* the entry to reuse next */

/* The cache entry of a path, or the one to reuse. */
static SecretFileCache *
cache_entry(const char *path)
{
	SecretFileCache *c;
	int			i;

	for (i = 0; i < SECRET_FILES; i++)
		if (secret_cache[i].path && strcmp(secret_cache[i].path, path) == 0)
			return &secret_cache[i];
	c = &secret_cache[secret_cache_next];
	secret_cache_next = (secret_cache_next + 1) % SECRET_FILES;
	return c;
}

/*
 * Read a key file, or reuse what was read while the file is the same: one
 * stat() per call instead of open, fstat, read and close.  A change of
 * inode, size, mtime, mode or owner re-reads (and re-checks) the file.
 */
static char *
cached_secret_file(const char *setting, const char *path)
{
	SecretFileCache *c = cache_entry(path);
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
