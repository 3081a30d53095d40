/*-------------------------------------------------------------------------
 *
 * settings_hooks.c
 *	  The check and show hooks of the atlas_users.* settings (guc.c):
 *	  secrets shown as a mask, URLs, the resource version and role lists
 *	  checked when they are set.
 *
 *-------------------------------------------------------------------------
 */
#include "settings/settings_int.h"
#include "transport/http.h"

#include <ctype.h>
#include <limits.h>

#include "utils/builtins.h"
#include "utils/varlena.h"

/* Show a secret as a mask: set or not, never its value. */
static const char *
show_secret(const char *value)
{
	return (value && value[0]) ? "********" : "";
}

const char *
atlas_show_private_key(void)
{
	return show_secret(atlas_private_key);
}

const char *
atlas_show_client_secret(void)
{
	return show_secret(atlas_client_secret);
}

/* Check atlas_users.base_url: https, or http to a loopback host only. */
bool
atlas_check_base_url(char **newval, void **extra pg_attribute_unused(),
			   GucSource source pg_attribute_unused())
{
	char	   *why = NULL;

	if (*newval == NULL || (*newval)[0] == '\0')
	{
		GUC_check_errdetail("atlas_users.base_url must not be empty.");
		return false;
	}
	if (!http_base_url_ok(*newval, "atlas_users.base_url", &why))
	{
		GUC_check_errdetail("%s", why);
		GUC_check_errhint("Use https://cloud.mongodb.com, or an http:// URL on a loopback host for tests.");
		return false;
	}
	return true;
}

/* Check atlas_users.proxy: empty, or an http:// or https:// proxy URL. */
bool
atlas_check_proxy(char **newval, void **extra pg_attribute_unused(),
			GucSource source pg_attribute_unused())
{
	char	   *why = NULL;

	if (*newval != NULL && !http_proxy_url_ok(*newval, "atlas_users.proxy", &why))
	{
		GUC_check_errdetail("%s", why);
		return false;
	}
	return true;
}

/*
 * Is v a resource version: a real date written YYYY-MM-DD?  On failure
 * *why says why, palloc'd.
 */
bool
atlas_api_version_ok(const char *v, char **why)
{
	int			y,
				m,
				d;
	static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

	if (strlen(v) != 10 || v[4] != '-' || v[7] != '-' ||
		!isdigit((unsigned char) v[0]) || !isdigit((unsigned char) v[1]) ||
		!isdigit((unsigned char) v[2]) || !isdigit((unsigned char) v[3]) ||
		!isdigit((unsigned char) v[5]) || !isdigit((unsigned char) v[6]) ||
		!isdigit((unsigned char) v[8]) || !isdigit((unsigned char) v[9]))
	{
		*why = pstrdup("It must be a date in the form YYYY-MM-DD.");
		return false;
	}
	/* the digits were checked above, so strtol cannot fail here */
	y = (int) strtol(v, NULL, 10);
	m = (int) strtol(v + 5, NULL, 10);
	d = (int) strtol(v + 8, NULL, 10);
	if (y < 2000 || m < 1 || m > 12 || d < 1 || d > mdays[m - 1] ||
		(m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0)))
	{
		*why = psprintf("\"%s\" is not a valid date.", v);
		return false;
	}
	return true;
}

/* Check atlas_users.api_version: empty, or a real date as YYYY-MM-DD. */
bool
atlas_check_api_version(char **newval, void **extra pg_attribute_unused(),
				  GucSource source pg_attribute_unused())
{
	char	   *why = NULL;

	if (*newval == NULL || (*newval)[0] == '\0' || atlas_api_version_ok(*newval, &why))
		return true;
	if (strncmp(why, "It must", 7) == 0)
		GUC_check_errdetail("atlas_users.api_version must be a date in the form YYYY-MM-DD, or empty.");
	else
		GUC_check_errdetail("%s", why);
	return false;
}

/* Check atlas_users.trusted_server_owners: a list of role names. */
bool
atlas_check_role_list(char **newval, void **extra pg_attribute_unused(),
				GucSource source pg_attribute_unused())
{
	char	   *copy;
	List	   *names;
	bool		ok;

	if (*newval == NULL || (*newval)[0] == '\0')
		return true;
	copy = pstrdup(*newval);
	ok = SplitIdentifierString(copy, ',', &names);
	list_free(names);
	pfree(copy);
	if (!ok)
		GUC_check_errdetail("atlas_users.trusted_server_owners must be a comma-separated list of role names.");
	return ok;
}
