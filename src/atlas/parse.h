/*-------------------------------------------------------------------------
 *
 * parse.h
 *	  Parsers of Atlas answers, free of PostgreSQL so that the libFuzzer
 *	  targets in test/fuzz/ link exactly the code the extension runs.
 *
 * Everything here uses cJSON and malloc only; results are either fixed
 * buffers or malloc'd structures with a matching free function.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_PARSE_H
#define ATLAS_PARSE_H

#include <stdbool.h>
#include <stddef.h>

#include <cjson/cJSON.h>

#define ATLAS_PARSE_CODE_MAX 64
#define ATLAS_PARSE_DETAIL_MAX 2048

/* an ApiError body, possibly wrapped as {"status": n, "content": {...}} */
typedef struct AtlasErrorBody
{
	bool		is_object;		/* a JSON object was found */
	bool		enveloped;		/* it came wrapped in an envelope */
	bool		has_error_code;
	bool		has_detail;
	bool		names_user;		/* the detail speaks of the user with the id */
	/* a rate limit's answer (429): from parameters, else the detail; -1: unsaid */
	double		rate_retry_after;	/* seconds */
	double		rate_capacity;
	double		rate_refill;
	double		rate_period;	/* seconds */
	char		error_code[ATLAS_PARSE_CODE_MAX];	/* raw bytes, NUL-terminated */
	char		detail[ATLAS_PARSE_DETAIL_MAX]; /* raw bytes, NUL-terminated */
} AtlasErrorBody;

extern void atlas_parse_error_body(const char *body, size_t len, const char *user_id,
								   AtlasErrorBody *out);

/* the longest bearer token we accept */
#define ATLAS_TOKEN_MAX 8192

/* the token endpoint's answer */
typedef struct AtlasTokenAnswer
{
	char	   *token;			/* malloc'd, or NULL */
	double		expires_in;		/* seconds, clamped to [1, 7 days] */
	const char *problem;		/* static text when unusable, else NULL */
} AtlasTokenAnswer;

extern bool atlas_parse_token_answer(const char *body, size_t len, AtlasTokenAnswer *out);
extern void atlas_free_token_answer(AtlasTokenAnswer *out);

/* one page of a list: {"results": [...], "links": [{"rel": "next", ...}]} */
typedef void (*AtlasItemFn) (const cJSON *item, void *arg);

extern bool atlas_list_page_items(const cJSON *json, AtlasItemFn fn, void *arg,
								  bool *has_next);
extern bool atlas_parse_list_page(const char *body, size_t len, AtlasItemFn fn, void *arg,
								  bool *has_next);

/* an OrgUserResponse (2025-02-19) */
typedef struct AtlasParsedGroup
{
	char	   *group_id;
	char	  **roles;
	int			nroles;
} AtlasParsedGroup;

typedef struct AtlasParsedUser
{
	char	   *id;
	char	   *username;
	char	   *status;
	char	  **org_roles;
	int			n_org_roles;
	AtlasParsedGroup *groups;
	int			ngroups;
	char	  **team_ids;
	int			nteams;
} AtlasParsedUser;

extern AtlasParsedUser *atlas_parse_org_user(const cJSON *obj);
extern void atlas_free_parsed_user(AtlasParsedUser *u);
extern bool atlas_is_id(const char *s);

/* a string member of an object, or NULL; points into the cJSON tree */
extern const char *atlas_json_string(const cJSON *obj, const char *name);
extern bool atlas_json_has_string(const cJSON *arr, const char *s);

/* parse_count.c */
extern long atlas_json_count_results(const char *s, size_t len, long max);

#endif							/* ATLAS_PARSE_H */
