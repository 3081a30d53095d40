--
-- setup: install atlas_users, list what it created, and define the helpers
-- the other test files use.
--
-- The other files expect the cluster of test/lib.sh: atlas_users.base_url
-- points at the Atlas emulator over https with the test CA, digest keys and
-- a service account are configured, auth_method = 'digest'.
--
CREATE EXTENSION atlas_users;

SELECT extname, extversion, extrelocatable, extnamespace::regnamespace AS schema
FROM pg_extension WHERE extname = 'atlas_users';

-- every object that belongs to the extension
SELECT pg_describe_object(classid, objid, objsubid) AS object
FROM pg_depend
WHERE refclassid = 'pg_extension'::regclass
  AND refobjid = (SELECT oid FROM pg_extension WHERE extname = 'atlas_users')
  AND deptype = 'e'
ORDER BY 1;

-- the four removal functions: signature, result, volatility, parallel
-- safety, and that only the owner (a superuser) may execute them
SELECT p.proname,
       pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS result,
       p.provolatile, p.proparallel, p.prosecdef,
       p.proacl
FROM pg_proc p
WHERE p.proname LIKE 'atlas\_%'
ORDER BY 1;

\d atlas_removal_audit

-- nobody but the owner has any privilege on the audit table
SELECT relacl FROM pg_class WHERE oid = 'atlas_removal_audit'::regclass;

-- pg_dump writes the rows of the audit and the queue and their sequences' positions
SELECT extconfig::regclass[] AS config_tables, extcondition
FROM pg_extension WHERE extname = 'atlas_users';

-- the settings the library defines once it is loaded
LOAD 'atlas_users';
SELECT name, context, vartype, boot_val
FROM pg_settings
WHERE name LIKE 'atlas\_users.%'
ORDER BY 1;

--
-- Test helpers, used by the other files.
--
-- regress_try(sql): run one statement and describe what happened, one line
-- per part: its result (the first column of its first row, or "done" for a
-- statement that returns no rows), or the error's SQLSTATE, message, detail, hint and
-- the context lines that do not come from this helper.  Text that varies
-- between runs and machines is normalized: the port of a loopback host,
-- libcurl's elapsed times, and the value of the custom setting
-- regress.hide (a directory), which becomes $DIR.
--
CREATE FUNCTION regress_norm(t text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
	hide text := current_setting('regress.hide', true);
BEGIN
	IF t IS NULL THEN
		RETURN NULL;
	END IF;
	IF hide IS NOT NULL AND hide <> '' THEN
		t := replace(t, hide, '$DIR');
	END IF;
	t := regexp_replace(t, '(localhost|127\.0\.0\.1):[0-9]+', '\1:PORT', 'g');
	t := regexp_replace(t, 'after [0-9]+ (ms|milliseconds)', 'after N \1', 'g');
	RETURN t;
END $$;

CREATE FUNCTION regress_try(cmd text) RETURNS SETOF text
LANGUAGE plpgsql AS $$
DECLARE
	st text;
	msg text;
	det text;
	hnt text;
	ctx text;
	r text;
	l text;
BEGIN
	IF cmd ~* '^\s*(SELECT|SHOW|VALUES|WITH|TABLE)\M' THEN
		EXECUTE cmd INTO r;
		RETURN NEXT 'result: ' || coalesce(r, '(null)');
	ELSE
		EXECUTE cmd;
		RETURN NEXT 'done';
	END IF;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT,
		det = PG_EXCEPTION_DETAIL, hnt = PG_EXCEPTION_HINT,
		ctx = PG_EXCEPTION_CONTEXT;
	RETURN NEXT 'sqlstate: ' || st;
	RETURN NEXT 'message: ' || regress_norm(msg);
	IF det <> '' THEN
		RETURN NEXT 'detail: ' || regress_norm(det);
	END IF;
	IF hnt <> '' THEN
		RETURN NEXT 'hint: ' || regress_norm(hnt);
	END IF;
	-- the context lines of this helper come last: drop them
	ctx := regexp_replace(ctx, '(^|\n)(SQL statement "|PL/pgSQL function ).*$', '');
	IF ctx <> '' THEN
		FOREACH l IN ARRAY string_to_array(ctx, E'\n') LOOP
			RETURN NEXT 'context: ' || regress_norm(l);
		END LOOP;
	END IF;
END $$;

-- regress_error(sql): the same, as one row (NULLs when it succeeded)
CREATE FUNCTION regress_error(cmd text,
	OUT state text, OUT message text, OUT detail text, OUT hint text,
	OUT context text)
LANGUAGE plpgsql AS $$
DECLARE
	ctx text;
BEGIN
	EXECUTE cmd;
	RETURN;
EXCEPTION WHEN OTHERS THEN
	GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, message = MESSAGE_TEXT,
		detail = PG_EXCEPTION_DETAIL, hint = PG_EXCEPTION_HINT,
		ctx = PG_EXCEPTION_CONTEXT;
	message := regress_norm(message);
	detail := nullif(regress_norm(detail), '');
	hint := nullif(regress_norm(hint), '');
	context := nullif(regress_norm(regexp_replace(ctx,
		'(^|\n)(SQL statement "|PL/pgSQL function ).*$', '')), '');
END $$;

-- regress_caught(sql): its SQLSTATE, message, detail and hint when it
-- raised, NULLs when it did not (regress_error without the context)
CREATE FUNCTION regress_caught(cmd text,
	OUT state text, OUT message text, OUT detail text, OUT hint text)
LANGUAGE sql AS $$
	SELECT state, message, detail, hint FROM regress_error(cmd)
$$;

GRANT EXECUTE ON FUNCTION regress_norm(text), regress_try(text), regress_error(text) TO PUBLIC;

SELECT regress_try('SELECT 1/0');
SELECT regress_try('SET regress.hide = ''''');
SELECT regress_try('SHOW regress.hide');
SELECT * FROM regress_error('SELECT 1');
