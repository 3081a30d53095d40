/*-------------------------------------------------------------------------
 *
 * parse.c
 *	  Parsers of Atlas answers: error bodies (enveloped or not), token
 *	  answers, list pages with their pagination links, and org users.
 *
 * No PostgreSQL here (see parse.h): the fuzz targets link this file as it
 * is.  Untrusted input is never trusted for sizes: strings are copied
 * into fixed buffers or strdup'd, arrays are counted before allocation,
 * and every allocation failure leaves a result that is safe to free.
 *
 *-------------------------------------------------------------------------
 */
#include "atlas/parse.h"

#include <stdlib.h>
#include <string.h>

/* Copy at most cap-1 bytes of s into dst, NUL-terminated. */
static void
copy_capped(char *dst, size_t cap, const char *s)
{
	size_t		n = strlen(s);

	if (n >= cap)
		n = cap - 1;
	memcpy(dst, s, n);
	dst[n] = '\0';
}

/* A string member of an object, or NULL. */
const char *
atlas_json_string(const cJSON *obj, const char *name)
{
	const cJSON *v;

	if (!cJSON_IsObject(obj))
		return NULL;
	v = cJSON_GetObjectItemCaseSensitive(obj, name);
	if (!cJSON_IsString(v) || v->valuestring == NULL)
		return NULL;
	return v->valuestring;
}

/* Is s a well-formed Atlas id (^[a-f0-9]{24}$)? */
bool
atlas_is_id(const char *s)
{
	int			i;

	if (s == NULL)
		return false;
	for (i = 0; i < 24; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[24] == '\0';
}

/* Does text end, at end, with suffix, ignoring case? */
static bool
ends_with_ci(const char *text, const char *end, const char *suffix)
{
	size_t		n = strlen(suffix);
	size_t		i;

	if ((size_t) (end - text) < n)
		return false;
	for (i = 0; i < n; i++)
	{
		char		c = end[(ptrdiff_t) i - (ptrdiff_t) n];

		if (c >= 'A' && c <= 'Z')
			c = (char) (c - 'A' + 'a');
		if (c != suffix[i])
			return false;
	}
	return true;
}

/*
 * Does the text speak of the user with this id: the id right after
 * "user ", "user id " or "user with id " ("No user with ID x exists.",
 * "User x is not a member", "Cannot find resource user x in team y")?
 * An id elsewhere ("Cannot find resource Online archive with id x") does
 * not count.
 */
static bool
mentions_user(const char *text, const char *user_id)
{
	const char *p = text;

	while ((p = strstr(p, user_id)) != NULL)
	{
		if (ends_with_ci(text, p, "user ") || ends_with_ci(text, p, "user id ") ||
			ends_with_ci(text, p, "user with id "))
			return true;
		p += strlen(user_id);
	}
	return false;
}

/* The number just after marker in s (from strtod), or -1 when there is none. */
static double
number_after(const char *s, const char *marker)
{
	const char *p = strstr(s, marker);
	char	   *end;
	double		v;

	if (p == NULL)
		return -1;
	p += strlen(marker);
	v = strtod(p, &end);
	return (end == p || !(v >= 0) || v > 1e9) ? -1 : v;
}

/* A number of an array, or -1. */
static double
array_number(const cJSON *arr, int i)
{
	const cJSON *v = cJSON_GetArrayItem(arr, i);

	return (cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= 1e9) ? v->valuedouble : -1;
}

/*
 * A rate limit's figures: from the parameters [path, retryAfter, capacity,
 * refillRate, refillDurationSeconds], else from the detail's text
 * ("... retry after 55 seconds. Request capacity: 10. Refill rate: 5 per
 * 60 seconds.").
 */
static void
parse_rate_limit(const cJSON *params, const char *detail, AtlasErrorBody *out)
{
	if (cJSON_IsArray(params) && cJSON_GetArraySize(params) >= 5)
	{
		out->rate_retry_after = array_number(params, 1);
		out->rate_capacity = array_number(params, 2);
		out->rate_refill = array_number(params, 3);
		out->rate_period = array_number(params, 4);
	}
	if (detail == NULL)
		return;
	if (out->rate_retry_after < 0)
		out->rate_retry_after = number_after(detail, "retry after ");
	if (out->rate_capacity < 0)
		out->rate_capacity = number_after(detail, "capacity: ");
	if (out->rate_refill < 0 || out->rate_period < 0)
	{
		const char *r = strstr(detail, "Refill rate: ");

		out->rate_refill = number_after(detail, "Refill rate: ");
		out->rate_period = r ? number_after(r, " per ") : -1;
	}
}

/*
 * Parse an ApiError body into out.  Accepts the {"status", "content"}
 * envelope, OAuth-style {"error": "...", "error_description": "..."}, and
 * anything else (out->is_object false).
 */
void
atlas_parse_error_body(const char *body, size_t len, const char *user_id, AtlasErrorBody *out)
{
	cJSON	   *json;
	const cJSON *obj;
	const char *s;

	memset(out, 0, sizeof(AtlasErrorBody));
	out->rate_retry_after = out->rate_capacity = out->rate_refill = out->rate_period = -1;
	if (body == NULL || len == 0)
		return;
	json = cJSON_ParseWithLength(body, len);
	if (json == NULL)
		return;
	obj = json;
	if (cJSON_IsObject(obj) &&
		cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(obj, "content")) &&
		cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(obj, "status")))
	{
		obj = cJSON_GetObjectItemCaseSensitive(obj, "content");
		out->enveloped = true;
	}
	if (cJSON_IsObject(obj))
	{
		const cJSON *params = cJSON_GetObjectItemCaseSensitive(obj, "parameters");

		out->is_object = true;
		if ((s = atlas_json_string(obj, "errorCode")) != NULL ||
			(s = atlas_json_string(obj, "error")) != NULL)
		{
			copy_capped(out->error_code, sizeof(out->error_code), s);
			out->has_error_code = true;
		}
		if ((s = atlas_json_string(obj, "detail")) != NULL ||
			(s = atlas_json_string(obj, "reason")) != NULL ||
			(s = atlas_json_string(obj, "error_description")) != NULL)
		{
			copy_capped(out->detail, sizeof(out->detail), s);
			out->has_detail = true;
			if (user_id && user_id[0] && mentions_user(s, user_id))
				out->names_user = true;
		}
		parse_rate_limit(params, out->has_detail ? out->detail : NULL, out);
	}
	cJSON_Delete(json);
}

/* Parse the token endpoint's 200 answer. */
bool
atlas_parse_token_answer(const char *body, size_t len, AtlasTokenAnswer *out)
{
	cJSON	   *json;
	const char *tok;
	const char *typ;
	const cJSON *exp;

	memset(out, 0, sizeof(AtlasTokenAnswer));
	json = (body && len) ? cJSON_ParseWithLength(body, len) : NULL;
	tok = atlas_json_string(json, "access_token");
	typ = atlas_json_string(json, "token_type");
	exp = cJSON_IsObject(json) ? cJSON_GetObjectItemCaseSensitive(json, "expires_in") : NULL;

	if (!cJSON_IsObject(json))
		out->problem = "the token endpoint did not answer with a JSON object";
	else if (tok == NULL || tok[0] == '\0' || strlen(tok) > ATLAS_TOKEN_MAX ||
			 strpbrk(tok, "\r\n") != NULL)
		out->problem = "the token endpoint answer has no usable access_token";
	else if (typ != NULL && strcmp(typ, "Bearer") != 0 && strcmp(typ, "bearer") != 0)
		out->problem = "the token endpoint answered a token that is not a bearer token";
	else
	{
		double		lifetime = (exp != NULL && cJSON_IsNumber(exp)) ? exp->valuedouble : 3600;

		/* NaN fails both comparisons: treat it as the default hour */
		if (!(lifetime >= 1))
			lifetime = (lifetime < 1) ? 1 : 3600;
		if (lifetime > 86400 * 7)
			lifetime = 86400 * 7;
		out->expires_in = lifetime;
		out->token = strdup(tok);
		if (out->token == NULL)
			out->problem = "out of memory";
	}
	cJSON_Delete(json);
	return out->problem == NULL;
}

/* Free what atlas_parse_token_answer allocated, wiping the token. */
void
atlas_free_token_answer(AtlasTokenAnswer *out)
{
	if (out->token)
	{
		size_t		n = strlen(out->token);
		volatile char *p = out->token;

		while (n-- > 0)
			*p++ = '\0';
		free(out->token);
	}
	out->token = NULL;
}

/*
 * Walk one parsed page of a list, calling fn for each result.  Returns
 * false if it is not a list; *has_next says whether a link of rel "next"
 * was given (and the page was not empty, so a server cannot keep us
 * reading empty pages).
 */
bool
atlas_list_page_items(const cJSON *json, AtlasItemFn fn, void *arg, bool *has_next)
{
	const cJSON *results;
	const cJSON *links;
	const cJSON *item;

	*has_next = false;
	results = cJSON_IsObject(json) ? cJSON_GetObjectItemCaseSensitive(json, "results") : NULL;
	links = cJSON_IsObject(json) ? cJSON_GetObjectItemCaseSensitive(json, "links") : NULL;
	if (!cJSON_IsArray(results))
		return false;
	cJSON_ArrayForEach(item, results)
		fn(item, arg);
	if (cJSON_IsArray(links))
	{
		cJSON_ArrayForEach(item, links)
		{
			const char *rel = atlas_json_string(item, "rel");

			if (rel && strcmp(rel, "next") == 0 && cJSON_GetArraySize(results) > 0)
				*has_next = true;
		}
	}
	return true;
}

/* Does a JSON array hold a string? */
bool
atlas_json_has_string(const cJSON *arr, const char *s)
{
	const cJSON *v;

	cJSON_ArrayForEach(v, arr)
	{
		if (cJSON_IsString(v) && strcmp(v->valuestring, s) == 0)
			return true;
	}
	return false;
}

/* Parse a page's body and walk it (for callers whose fn cannot fail). */
bool
atlas_parse_list_page(const char *body, size_t len, AtlasItemFn fn, void *arg, bool *has_next)
{
	cJSON	   *json = (body && len) ? cJSON_ParseWithLength(body, len) : NULL;
	bool		ok = atlas_list_page_items(json, fn, arg, has_next);

	cJSON_Delete(json);
	return ok;
}

/* strdup'd strings of a string array member; *n gets the count. */
static char **
string_array(const cJSON *obj, const char *name, int *n)
{
	const cJSON *arr = cJSON_IsObject(obj) ? cJSON_GetObjectItemCaseSensitive(obj, name) : NULL;
	const cJSON *v;
	char	  **result;
	int			count = 0;

	*n = 0;
	if (!cJSON_IsArray(arr))
		return NULL;
	cJSON_ArrayForEach(v, arr)
	{
		if (cJSON_IsString(v))
			count++;
	}
	if (count == 0)
		return NULL;
	result = calloc(count, sizeof(char *));
	if (result == NULL)
		return NULL;
	cJSON_ArrayForEach(v, arr)
	{
		if (cJSON_IsString(v) && *n < count)
		{
			result[*n] = strdup(v->valuestring);
			if (result[*n] == NULL)
				break;
			(*n)++;
		}
	}
	return result;
}

/* strdup of a string member, or NULL. */
static char *
dup_member(const cJSON *obj, const char *name)
{
	const char *s = atlas_json_string(obj, name);

	return s ? strdup(s) : NULL;
}

/*
 * Parse an OrgUserResponse.  Returns NULL when it has no well-formed id
 * (or on allocation failure).  Group assignments without a well-formed
 * groupId are skipped.
 */
AtlasParsedUser *
atlas_parse_org_user(const cJSON *obj)
{
	AtlasParsedUser *u;
	const cJSON *roles;
	const cJSON *gra;
	const cJSON *g;
	int			count = 0;

	if (!cJSON_IsObject(obj) || !atlas_is_id(atlas_json_string(obj, "id")))
		return NULL;
	u = calloc(1, sizeof(AtlasParsedUser));
	if (u == NULL)
		return NULL;
	u->id = dup_member(obj, "id");
	u->username = dup_member(obj, "username");
	u->status = dup_member(obj, "orgMembershipStatus");
	roles = cJSON_GetObjectItemCaseSensitive(obj, "roles");
	u->org_roles = string_array(roles, "orgRoles", &u->n_org_roles);
	u->team_ids = string_array(obj, "teamIds", &u->nteams);

	gra = cJSON_IsObject(roles) ? cJSON_GetObjectItemCaseSensitive(roles, "groupRoleAssignments") : NULL;
	if (cJSON_IsArray(gra))
	{
		cJSON_ArrayForEach(g, gra)
		{
			if (atlas_is_id(atlas_json_string(g, "groupId")))
				count++;
		}
	}
	if (count > 0)
		u->groups = calloc(count, sizeof(AtlasParsedGroup));
	if (u->groups)
	{
		cJSON_ArrayForEach(g, gra)
		{
			if (u->ngroups < count && atlas_is_id(atlas_json_string(g, "groupId")))
			{
				AtlasParsedGroup *pg = &u->groups[u->ngroups++];

				pg->group_id = dup_member(g, "groupId");
				pg->roles = string_array(g, "groupRoles", &pg->nroles);
			}
		}
	}
	if (u->id == NULL)
	{
		atlas_free_parsed_user(u);
		return NULL;
	}
	return u;
}

/* Free an array of n strdup'd strings. */
static void
free_strings(char **a, int n)
{
	int			i;

	for (i = 0; i < n; i++)
		free(a[i]);
	free(a);
}

/* Free what atlas_parse_org_user allocated. */
void
atlas_free_parsed_user(AtlasParsedUser *u)
{
	int			i;

	if (u == NULL)
		return;
	free(u->id);
	free(u->username);
	free(u->status);
	free_strings(u->org_roles, u->n_org_roles);
	free_strings(u->team_ids, u->nteams);
	for (i = 0; u->groups != NULL && i < u->ngroups; i++)
	{
		free(u->groups[i].group_id);
		free_strings(u->groups[i].roles, u->groups[i].nroles);
	}
	free(u->groups);
	free(u);
}
