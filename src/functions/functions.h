/*-------------------------------------------------------------------------
 *
 * functions.h
 *	  What the SQL-callable functions share: the checks of their arguments
 *	  (validate.c) and users and memberships (lookup.c).  The families of
 *	  listings (listings.h) and offboarding (offboard.h) have their own.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_FUNCTIONS_H
#define ATLAS_FUNCTIONS_H

#include "executor/run.h"
#include "fmgr.h"

/* validate.c: checks of SQL arguments, before any network traffic */
extern char *atlas_id_arg(FunctionCallInfo fcinfo, int argno, const char *param);
extern char *atlas_username_arg(FunctionCallInfo fcinfo, int argno, const char *param);
extern bool atlas_is_username(const char *s);
extern bool atlas_bool_arg(FunctionCallInfo fcinfo, int argno, const char *param);

/* the longest reason and ticket (bytes) kept in the queue and the audit */
#define ATLAS_REASON_MAX 255
#define ATLAS_TICKET_MAX 127
extern char *atlas_evidence_text(const char *value, const char *param, int maxlen);
extern void atlas_evidence_args(FunctionCallInfo fcinfo, int argno, char **reason,
								char **ticket);
extern int	atlas_ids_arg(FunctionCallInfo fcinfo, int argno, AtlasOperation op,
						  bool with_user, char **ids);

/* lookup.c: users and memberships */
typedef struct AtlasGroupRoles
{
	char	   *group_id;
	List	   *roles;			/* of char * */
} AtlasGroupRoles;

typedef struct AtlasOrgUser
{
	char	   *id;
	char	   *username;
	char	   *status;			/* orgMembershipStatus */
	List	   *org_roles;		/* of char * */
	List	   *groups;			/* of AtlasGroupRoles * */
	List	   *team_ids;		/* of char * */
} AtlasOrgUser;

typedef struct AtlasMembership
{
	const char *scope;			/* "org", "project" or "team" */
	char	   *id;
	char	   *name;
	List	   *roles;
	char	   *status;
} AtlasMembership;

extern void atlas_read(AtlasCall *call);
extern AtlasOrgUser *atlas_org_user_from_json(const cJSON *obj);
extern void atlas_username_listing(AtlasListing *listing, AtlasOperation op,
								   const char *org_id, const char *group_id,
								   const char *username, AtlasOrgUser **found);
extern AtlasOrgUser *atlas_fetch_org_user(const char *org_id, const char *username_or_id,
										  AtlasTarget *target);
extern List *atlas_user_membership_list(const char *org_id, AtlasOrgUser *u, bool with_names);
extern AtlasOrgUser *atlas_org_user_arg(FunctionCallInfo fcinfo, int argno,
										const char *org_id, bool *found);

/* invitations.c: legacy project invitations, while they live */
typedef struct AtlasLegacyInvite
{
	char	   *id;
	char	   *group_id;
	char	   *username;
} AtlasLegacyInvite;

extern List *atlas_read_project_invites(AtlasTarget *target, const char *org_id,
										const char *label, char **unseen);
extern char *atlas_invites_unseen_retired(AtlasCall *failed);
extern char *atlas_invites_unseen_bound(int nprojects);

#endif							/* ATLAS_FUNCTIONS_H */
