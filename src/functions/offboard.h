/*-------------------------------------------------------------------------
 *
 * offboard.h
 *	  The offboarding family: what offboarding learns of a person in one
 *	  organization (offboard_facts.c, offboard_names.c, federation.c), for
 *	  offboard.c to plan and run.
 *
 *-------------------------------------------------------------------------
 */
#ifndef ATLAS_OFFBOARD_H
#define ATLAS_OFFBOARD_H

#include "functions/functions.h"

/* a pending invitation to a project (made through the deprecated endpoint) */
typedef struct OffInvite
{
	char	   *id;
	char	   *group_id;
	bool		gone;			/* no longer listed after the removals */
} OffInvite;

/* a project a person reaches through one of their teams */
typedef struct OffTeamRoute
{
	char	   *group_id;
	char	   *team_id;
	char	   *roles;			/* the team's roles there, comma-separated */
} OffTeamRoute;

typedef enum OffFederation
{
	OFF_NOT_FEDERATED,
	OFF_FEDERATED,
	OFF_FEDERATION_UNKNOWN		/* Atlas would not say */
} OffFederation;

typedef struct OffFacts
{
	/* given */
	char	   *org_id;
	AtlasTarget *target;		/* NULL: chosen by organization */
	const char *scope;			/* 'org', 'projects' or 'teams' */
	bool		force;			/* past the removal budget */
	const char *reason;			/* evidence for the audit, or NULL */
	const char *ticket;
	bool		dry_run;		/* a plan only: nothing is removed */
	bool		with_names;		/* the result has a name column (1.5) */
	/* learned */
	AtlasOrgUser *u;			/* NULL: not a member (maybe invited) */
	char	   *username;		/* NULL when only an id is known */
	List	   *project_invites;	/* of OffInvite */
	char	   *invites_unseen; /* why project invitations could not be read */
	List	   *team_routes;	/* of OffTeamRoute */
	bool		last_org_owner;
	List	   *last_owner_projects;	/* group ids */
	List	   *last_member_teams;	/* team ids */
	OffFederation federation;
	char	   *federation_detail;
	char	   *org_name;		/* NULL: not read, or Atlas would not say */
	List	   *names;			/* of projects and teams (offboard_names.c) */
} OffFacts;

/* an organization's federation (federation.c) */
typedef struct AtlasFederation
{
	bool		known;			/* Atlas said; else problem says why not */
	bool		active;			/* an ACTIVE identity provider */
	char	   *settings_id;	/* the federation settings' id */
	char	   *idp_id;
	char	   *problem;
	AtlasCall  *call;			/* the read */
} AtlasFederation;

extern void atlas_federation_read(const char *org_id, AtlasTarget *target,
								  AtlasFederation *fed);
extern List *atlas_federation_groups(const char *org_id, AtlasTarget *target,
									 const AtlasFederation *fed, char **problem,
									 char **post_auth);

extern void atlas_offboard_note_name(OffFacts *f, const cJSON *item);
extern const char *atlas_offboard_name(OffFacts *f, const char *id);
extern AtlasListing *atlas_offboard_team_names(OffFacts *f);
extern void atlas_offboard_org_name(OffFacts *f);

extern void atlas_offboard_gather(OffFacts *f, const char *who);
extern bool atlas_offboard_relist_invites(OffFacts *f, List *invites);
extern List *atlas_offboard_orgs(void);

#endif							/* ATLAS_OFFBOARD_H */
