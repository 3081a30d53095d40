/*-------------------------------------------------------------------------
 *
 * trigger.c
 *	  atlas_offboard_trigger(): the HR trigger that enqueues a removal.
 *
 * An AFTER ROW trigger on an HR table.  Its arguments: the operation
 * ('project', 'org' or 'team'), then one 'param=column' per id, reading
 * the id from the row's column, or 'param:=value' giving it literally;
 * params are org_id, group_id, team_id, user_id and username (an e-mail
 * address, resolved when the removal runs), and reason and ticket, the
 * evidence kept with the queue row and its audit rows.  The ids an operation needs
 * come from the endpoint table.  A row with neither a user id nor a
 * username is skipped (that person has no Atlas account); a malformed id
 * or e-mail, or a missing id the operation needs, fails the statement
 * with 22023, so bad data is never silently ignored.  Nothing is sent:
 * the removal runs after the HR transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#include "queue/queue.h"

#include "commands/trigger.h"
#include "executor/spi.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(atlas_offboard_trigger);

/* the id parameters of the trigger's arguments, then username, reason, ticket */
#define N_PARAMS (ATLAS_MAX_IDS + 3)
#define USERNAME_PARAM ATLAS_MAX_IDS
#define REASON_PARAM (ATLAS_MAX_IDS + 1)
#define TICKET_PARAM (ATLAS_MAX_IDS + 2)

/* The index of a parameter name: an AtlasIdKind, USERNAME_PARAM, or -1. */
static int
param_index(const char *name)
{
	int			k;

	for (k = 0; k < ATLAS_MAX_IDS; k++)
		if (strcmp(name, atlas_id_param_name((AtlasIdKind) k)) == 0)
			return k;
	if (strcmp(name, "reason") == 0)
		return REASON_PARAM;
	if (strcmp(name, "ticket") == 0)
		return TICKET_PARAM;
	return strcmp(name, "username") == 0 ? USERNAME_PARAM : -1;
}

/* Check the trigger's firing and arguments. */
static void
check_trigger(FunctionCallInfo fcinfo)
{
	TriggerData *td = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("atlas_offboard_trigger() must be called as a trigger")));
	if (!TRIGGER_FIRED_AFTER(td->tg_event) || !TRIGGER_FIRED_FOR_ROW(td->tg_event))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("atlas_offboard_trigger() must be an AFTER ... FOR EACH ROW trigger")));
	if (td->tg_trigger->tgnargs < 2)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("atlas_offboard_trigger() needs an operation and the id columns"),
				 errhint("Example: atlas_offboard_trigger('org', 'org_id:=5d40865dd5ec13e5f9e9d899', 'user_id=atlas_user_id')")));
}

/* The value an argument names: a literal, or the row's column (maybe NULL). */
static char *
argument_value(TriggerData *td, const char *argtext, char *rhs, bool literal)
{
	HeapTuple	row = TRIGGER_FIRED_BY_UPDATE(td->tg_event) ? td->tg_newtuple : td->tg_trigtuple;
	TupleDesc	desc = RelationGetDescr(td->tg_relation);
	int			attno;

	if (literal)
		return rhs;
	attno = SPI_fnumber(desc, rhs);
	if (attno <= 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_COLUMN),
				 errmsg("column \"%s\" of atlas_offboard_trigger argument \"%s\" does not exist in \"%s\"",
						rhs, argtext, RelationGetRelationName(td->tg_relation))));
	return SPI_getvalue(row, desc, attno);
}

/* Check a value read for a parameter; NULL is left to the caller. */
static void
check_value(int k, const char *value, const char *argtext)
{
	if (value == NULL || k == REASON_PARAM || k == TICKET_PARAM)
		return;
	if (k == USERNAME_PARAM && !atlas_is_username(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid username from atlas_offboard_trigger argument \"%s\"", argtext),
				 errdetail("An Atlas username is an e-mail address; no removal was queued.")));
	if (k != USERNAME_PARAM && !atlas_is_id(value))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid %s from atlas_offboard_trigger argument \"%s\"",
						atlas_id_param_name((AtlasIdKind) k), argtext),
				 errdetail("An Atlas id is 24 lowercase hexadecimal characters (^[a-f0-9]{24}$); no removal was queued.")));
}

/* Read every 'param=column' and 'param:=value' argument into values[]. */
static void
read_arguments(TriggerData *td, char **values)
{
	Trigger    *tg = td->tg_trigger;
	int			i;

	memset(values, 0, sizeof(char *) * N_PARAMS);
	for (i = 1; i < tg->tgnargs; i++)
	{
		char	   *arg = pstrdup(tg->tgargs[i]);
		char	   *eq = strchr(arg, '=');
		bool		literal;
		int			k;

		if (eq == NULL || eq == arg)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid atlas_offboard_trigger argument \"%s\"", tg->tgargs[i]),
					 errhint("Write 'param=column' or 'param:=value', with param one of org_id, group_id, team_id, user_id, username, reason, ticket.")));
		literal = (eq[-1] == ':');
		if (literal)
			eq[-1] = '\0';
		*eq = '\0';
		k = param_index(arg);
		if (k < 0)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("unknown atlas_offboard_trigger parameter \"%s\"", arg),
					 errhint("Use org_id, group_id, team_id, user_id, username, reason or ticket.")));
		values[k] = argument_value(td, tg->tgargs[i], eq + 1, literal);
		check_value(k, values[k], tg->tgargs[i]);
		if (k == REASON_PARAM || k == TICKET_PARAM)
			values[k] = atlas_evidence_text(values[k], tg->tgargs[i],
											k == REASON_PARAM ? ATLAS_REASON_MAX : ATLAS_TICKET_MAX);
	}
}

/* atlas_offboard_trigger(): an AFTER ROW trigger that enqueues a removal */
Datum
atlas_offboard_trigger(PG_FUNCTION_ARGS)
{
	TriggerData *td = (TriggerData *) fcinfo->context;
	char	   *values[N_PARAMS];
	char	   *ids[ATLAS_MAX_IDS];
	AtlasIdKind kinds[ATLAS_MAX_IDS];
	AtlasOperation op;
	int			n;
	int			i;

	check_trigger(fcinfo);
	op = atlas_operation_from_name(td->tg_trigger->tgargs[0], true);
	read_arguments(td, values);

	/* this person has no Atlas user id or username: nothing to remove */
	if (values[ATLAS_ID_USER] == NULL && values[USERNAME_PARAM] == NULL)
		return PointerGetDatum(NULL);

	/* keep the ids the operation takes; each must be there */
	memset(ids, 0, sizeof(ids));
	n = atlas_operation_ids(op, kinds);
	for (i = 0; i < n; i++)
	{
		const char *name = atlas_id_param_name(kinds[i]);

		ids[kinds[i]] = values[kinds[i]];
		if (kinds[i] != ATLAS_ID_USER && ids[kinds[i]] == NULL)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("atlas_offboard_trigger(%s) has no %s",
							td->tg_trigger->tgargs[0], name),
					 errhint("Add a '%s=column' or '%s:=value' trigger argument, or make the column non-null.",
							 name, name)));
	}
	(void) atlas_enqueue(op, ids, ids[ATLAS_ID_USER] ? NULL : values[USERNAME_PARAM],
						 values[REASON_PARAM], values[TICKET_PARAM]);
	return PointerGetDatum(NULL);
}
