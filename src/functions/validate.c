/*-------------------------------------------------------------------------
 *
 * validate.c
 *	  Checks of SQL arguments, done before any request leaves the backend.
 *
 * Atlas ids are 24 lowercase hexadecimal characters (^[a-f0-9]{24}$),
 * checked by atlas_is_id() of parse.c.
 * Anything else, NULL included, raises SQLSTATE 22023 naming the
 * parameter; the offending value is shown escaped, never sent anywhere.
 *
 *-------------------------------------------------------------------------
 */
#include "functions/functions.h"

#include "lib/stringinfo.h"
#include "utils/builtins.h"

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

#define ID_FORMAT "An Atlas id is 24 lowercase hexadecimal characters (^[a-f0-9]{24}$); no request was sent."
#define USERNAME_FORMAT "An Atlas username is the user's e-mail address, such as jane@example.com; no request was sent."

/*
 * Return text argument argno if is_valid accepts it; otherwise raise 22023
 * naming the parameter, with the format in the detail (for a NULL too when
 * null_detail).
 */
static char *
checked_text_arg(FunctionCallInfo fcinfo, int argno, const char *param,
				 bool (*is_valid) (const char *), const char *format, bool null_detail)
{
	char	   *value;

	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", param),
				 null_detail ? errdetail("%s", format) : 0));
	value = text_to_cstring(PG_GETARG_TEXT_PP(argno));
	if (!is_valid(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s: %s", param, quote_bad_value(value)),
				 errdetail("%s", format)));
	return value;
}

/* Return argument argno as a validated Atlas id, or raise 22023. */
char *
atlas_id_arg(FunctionCallInfo fcinfo, int argno, const char *param)
{
	return checked_text_arg(fcinfo, argno, param, atlas_is_id, ID_FORMAT, true);
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
	return checked_text_arg(fcinfo, argno, param, atlas_is_username, USERNAME_FORMAT, false);
}

/*
 * Read and validate, from the SQL arguments starting at argno, the ids an
 * operation takes, in order, into ids[] indexed by AtlasIdKind (the user
 * id too only when with_user).  Returns the number of the next argument.
 */
int
atlas_ids_arg(FunctionCallInfo fcinfo, int argno, AtlasOperation op, bool with_user,
			  char **ids)
{
	AtlasIdKind kinds[ATLAS_MAX_IDS];
	int			n = atlas_operation_ids(op, kinds);
	int			i;

	memset(ids, 0, sizeof(char *) * ATLAS_MAX_IDS);
	for (i = 0; i < n; i++)
	{
		if (kinds[i] == ATLAS_ID_USER && !with_user)
			continue;
		ids[kinds[i]] = atlas_id_arg(fcinfo, argno++, atlas_id_param_name(kinds[i]));
	}
	return argno;
}

/* Return a boolean argument, which must not be NULL, or raise 22023. */
bool
atlas_bool_arg(FunctionCallInfo fcinfo, int argno, const char *param)
{
	if (PG_ARGISNULL(argno))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s must not be null", param)));
	return PG_GETARG_BOOL(argno);
}

/*
 * Check a reason or ticket: NULL or "" is none; longer than maxlen bytes,
 * or holding control characters, is 22023.
 */
char *
atlas_evidence_text(const char *value, const char *param, int maxlen)
{
	const char *p;

	if (value == NULL || value[0] == '\0')
		return NULL;
	if ((int) strlen(value) > maxlen)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("%s is longer than %d bytes", param, maxlen),
				 errdetail("Nothing was sent or queued.")));
	for (p = value; *p; p++)
		if ((unsigned char) *p < 0x20 && *p != '\t')
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("%s must not hold control characters", param),
					 errdetail("Nothing was sent or queued.")));
	return pstrdup(value);
}

/*
 * Read the optional reason and ticket arguments at argno and argno + 1
 * (absent in an install not yet updated to 1.5) into *reason and *ticket.
 */
void
atlas_evidence_args(FunctionCallInfo fcinfo, int argno, char **reason, char **ticket)
{
	*reason = NULL;
	*ticket = NULL;
	if (PG_NARGS() > argno && !PG_ARGISNULL(argno))
		*reason = atlas_evidence_text(text_to_cstring(PG_GETARG_TEXT_PP(argno)), "reason",
									  ATLAS_REASON_MAX);
	if (PG_NARGS() > argno + 1 && !PG_ARGISNULL(argno + 1))
		*ticket = atlas_evidence_text(text_to_cstring(PG_GETARG_TEXT_PP(argno + 1)), "ticket",
									  ATLAS_TICKET_MAX);
}
