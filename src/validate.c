/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Checks of SQL arguments, done before any request leaves the backend.
 *
 * Atlas ids are 24 lowercase hexadecimal characters (^[a-f0-9]{24}$).
 * Anything else, NULL included, raises SQLSTATE 22023 naming the
 * parameter; the offending value is shown escaped, never sent anywhere.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas_users.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"

#define ATLAS_ID_LEN 24

/* Is s a well-formed Atlas id? */
bool
atlas_is_atlas_id(const char *s)
{
	int			i;

	for (i = 0; i < ATLAS_ID_LEN; i++)
	{
		char		c = s[i];

		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return false;
	}
	return s[ATLAS_ID_LEN] == '\0';
}

/* Quote a bad value for a message: control bytes escaped, length capped. */
static char *
quote_bad_value(const char *s)
{
	StringInfoData buf;
	int			n = 0;

	initStringInfo(&buf);
	appendStringInfoChar(&buf, '"');
	for (; *s && n < 64; s++, n++)
	{
		unsigned char c = (unsigned char) *s;

		if (c == '"' || c == '\\')
			appendStringInfo(&buf, "\\%c", c);
		else if (c < 0x20 || c == 0x7f)
			appendStringInfo(&buf, "\\x%02x", c);
		else
			appendStringInfoChar(&buf, (char) c);
	}
	appendStringInfoChar(&buf, '"');
	if (*s)
		appendStringInfoString(&buf, "...");
	return buf.data;
}

/*
 * Return argument argno as a validated Atlas id, or raise 22023 naming
 * the parameter.
 */
char *
atlas_id_arg(FunctionCallInfo fcinfo, int argno, const char *param)
{
	char	   *value;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", param),
				 errdetail("An Atlas id is 24 lowercase hexadecimal characters (^[a-f0-9]{24}$); no request was sent.")));

	value = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (!atlas_is_atlas_id(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: %s", param, quote_bad_value(value)),
				 errdetail("An Atlas id is 24 lowercase hexadecimal characters (^[a-f0-9]{24}$); no request was sent.")));
	return value;
}

/*
 * Is s shaped like an e-mail address, as Atlas usernames are?  A light
 * check: one '@' with text on both sides, a dot in the domain, no spaces
 * or control characters, at most 254 bytes.
 */
bool
atlas_is_username(const char *s)
{
	const char *at = strchr(s, '@');
	const char *p;
	size_t		len = strlen(s);

	if (len < 3 || len > 254 || at == NULL || at == s || strchr(at + 1, '@') != NULL)
		return false;
	for (p = s; *p; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c <= 0x20 || c == 0x7f || c == '/' || c == '\\' || c == '"' || c == '<' || c == '>')
			return false;
	}
	p = at + 1;
	if (*p == '.' || s[len - 1] == '.' || strchr(p, '.') == NULL || strstr(p, "..") != NULL)
		return false;
	return true;
}

/* Return argument argno as a checked username, or raise 22023. */
char *
atlas_username_arg(FunctionCallInfo fcinfo, int argno, const char *param)
{
	char	   *value;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", param)));
	value = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (!atlas_is_username(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: %s", param, quote_bad_value(value)),
				 errdetail("An Atlas username is the user's e-mail address, such as jane@example.com; no request was sent.")));
	return value;
}
