#!/usr/bin/env python3
"""Local stand-in for the MongoDB Atlas Administration API (test fixture).

Python 3.11 standard library only.  Reference for every shape and status:
shared/atlas-api/atlas-admin-api-v2.yaml (official OpenAPI spec) and
shared/atlas-api/README.md (its section "Production facts" in particular).
Where Atlas's behaviour is undocumented, the emulator makes a choice; every
such choice is marked GUESS below.  A client must not depend on a GUESS (an
error code, a status, a refill schedule): it should cope with any answer of
the same family.

Usage
-----
  python3 atlas_emulator.py --host 127.0.0.1 --http-port 0 [--https-port 0 \
      --cert server.crt --key server.key] --seed seed.json \
      --port-file ports.json [--latency-ms 0] [--verbose]

  Port 0 picks a free port.  Without --cert/--key there is no TLS listener
  (https_port is then null in the port file).  Once both listeners accept,
  {"http_port": N, "https_port": M, "pid": P} is written to --port-file
  atomically (temp file + rename).  SIGTERM/SIGINT stop the emulator cleanly
  (the port file is removed again).  --verbose logs one line per request to
  stderr; nothing is logged otherwise.

  Other options (all also settable at run time through /__emulator/config):
  --nonce-ttl-s (300), --token-ttl-s (3600), --token-rate-limit (50 token
  requests per rolling --token-rate-window-s, 60), --token-cap (100 active
  tokens per service account; 0 = no cap), --today YYYY-MM-DD (date used for
  sunset checks; default: the real current UTC date), --idle-timeout-s (300:
  idle keep-alive connections are closed after it), --config JSON (any config
  keys, e.g. '{"rate_limits": {"enabled": false}}').  The command-line values
  are the defaults that POST /__emulator/reset restores.

  A test facility that is not Atlas: a path beginning /x/<segment> is
  served as the rest of the path, so that a base URL with a path prefix of
  any length (https://localhost:PORT/x/aaaa...) reaches the emulated Atlas.

Seed JSON (extensions over the basic shape are marked +)
---------------------------------------------------------
  {"orgs":     [{"id": "<24hex>", "name": "...",
                 +"federated": false, +"federationSettings": {...}}],
   "projects": [{"id": "<24hex>", "orgId": "<24hex>", "name": "...",
                 +"created": "2024-01-01T00:00:00Z"}],
   "teams":    [{"id": "<24hex>", "orgId": "<24hex>", "name": "...",
                 "userIds": ["<24hex>", ...],
                 +"projects": {"<groupId>": ["GROUP_READ_ONLY"]}}],   (team project roles)
   "users":    [{"id": "<24hex>", "username": "jane@example.com",
                 "status": "ACTIVE" | "PENDING" | +"INVITATION_EXPIRED"
                           | +"INVITATION_REJECTED",
                 "firstName": "...", "lastName": "...",
                 +"country": "US", +"mobileNumber": "...",
                 +"createdAt": "...", +"lastAuth": "...",
                 +"invitationCreatedAt": "...", +"invitationExpiresAt": "...",
                 +"inviterUsername": "..."  (an e-mail address or, as real answers
                     show, an API public key),
                 +"legacyProjectInvite": true   (invited through the deprecated
                     project-invitation endpoint: invisible to, and not
                     removable through, the v2 user endpoints; see Invitations),
                 "orgs": {"<orgId>": ["ORG_MEMBER"]},
                 "projects": {"<groupId>": ["GROUP_READ_ONLY"]}}],
   "api_keys": [{"public_key": "abcdefgh", "private_key": "<uuid>",
                 +"id": "<24hex>", +"orgIds": ["<orgId>", ...]}],
   "service_accounts": [{"client_id": "mdb_sa_id_<24hex>",
                         "client_secret": "mdb_sa_sk_...",
                         +"orgIds": ["<orgId>", ...]}]}

  Team membership comes only from teams[].userIds.  A user listed in a
  project or team of an org it is not a member of is made an ORG_MEMBER of
  that org.  Missing user fields get defaults.  POST /__emulator/seed with a
  seed that has no "api_keys" / "service_accounts" keeps the current ones
  (with their orgIds).

  seed.json holds two organizations.  Acme Corp (65f0a...01: 3 projects, 2
  teams) and Globex (65f0a...02, federated: globex-prod, globex-team, its owner
  globex.owner@example.com, dave@example.com who is in Acme too, and
  hank@example.com, PENDING, invited by the API public key "globexak").
  owner@example.com (65f0d...0c) is Acme's Organization Owner, Project Owner of
  every Acme project and a member of every Acme team, so that every org,
  project and team keeps an owner or member that the tests never remove.  The
  first key pair (atlasemu) and service account are valid for Acme only, the
  second ones (globexak, mdb_sa_id_...04) for Globex only.

Served API (on both listeners)
------------------------------
  v2 (digest API keys or Bearer tokens), versions per operation as in the spec
  (set = the rate-limit endpoint set, see Rate limits):
    GET    /api/atlas/v2                                        2023-01-01   (unmetered)
    GET    /api/atlas/v2/orgs                                   2023-01-01   orgs (IP)
    GET    /api/atlas/v2/orgs/{orgId}                           2023-01-01   orgs
    GET    /api/atlas/v2/orgs/{orgId}/groups                    2023-01-01   orgs
    GET    /api/atlas/v2/orgs/{orgId}/federationSettings        2023-01-01   orgs
    GET    /api/atlas/v2/federationSettings/{id}/connectedOrgConfigs/{orgId}  2023-01-01  orgs
    GET    /api/atlas/v2/federationSettings/{id}/connectedOrgConfigs/{orgId}/roleMappings
                                                                2023-01-01   orgs
    GET    /api/atlas/v2/orgs/{orgId}/users                     2023-01-01*, 2025-02-19  org_users
    GET    /api/atlas/v2/orgs/{orgId}/users/{userId}            2025-02-19   org_users
    DELETE /api/atlas/v2/orgs/{orgId}/users/{userId}            2023-01-01*, 2025-02-19  org_users
    GET    /api/atlas/v2/orgs/{orgId}/invites                   2023-01-01*  invites
    GET    /api/atlas/v2/orgs/{orgId}/invites/{invitationId}    2023-01-01*  invites
    DELETE /api/atlas/v2/orgs/{orgId}/invites/{invitationId}    2023-01-01*  invites
    GET    /api/atlas/v2/orgs/{orgId}/teams                     2023-01-01   teams
    GET    /api/atlas/v2/orgs/{orgId}/teams/{teamId}            2023-01-01   teams
    GET    /api/atlas/v2/orgs/{orgId}/teams/{teamId}/users      2023-01-01*, 2025-02-19  teams
    DELETE /api/atlas/v2/orgs/{orgId}/teams/{teamId}/users/{userId}  2023-01-01*     teams
    POST   /api/atlas/v2/orgs/{orgId}/teams/{teamId}:removeUser 2025-02-19   teams
    GET    /api/atlas/v2/groups                                 2023-01-01   projects (IP)
    GET    /api/atlas/v2/groups/{groupId}                       2023-01-01   projects
    GET    /api/atlas/v2/groups/{groupId}/teams                 2023-01-01   projects
    GET    /api/atlas/v2/groups/{groupId}/users                 2023-01-01*, 2025-02-19  project_users
    GET    /api/atlas/v2/groups/{groupId}/users/{userId}        2025-02-19   project_users
    DELETE /api/atlas/v2/groups/{groupId}/users/{userId}        2023-01-01*, 2025-02-19  project_users
    GET    /api/atlas/v2/groups/{groupId}/invites               2023-01-01*  invites
    GET    /api/atlas/v2/groups/{groupId}/invites/{invitationId}  2023-01-01*  invites
    DELETE /api/atlas/v2/groups/{groupId}/invites/{invitationId}  2023-01-01*  invites
    (* deprecated, sunset 2027-07-01: 410 VERSION_GONE from then on)
  legacy v1.0 (digest only; a Bearer header gets 401), set v1:
    DELETE /api/atlas/v1.0/groups/{GROUP-ID}/users/{USER-ID}    -> 204
    GET    /api/atlas/v1.0/groups/{GROUP-ID}/users              (2023 shape)
    GET    /api/atlas/v1.0/users/byName/{USERNAME}              (2023 shape; scope IP)
  OAuth: POST /api/oauth/token, POST /api/oauth/revoke (not bucket-metered;
  they have the token limits of Service accounts below).

Behaviour choices (where the spec is silent)
--------------------------------------------
  * Version negotiation: "Accept: application/vnd.atlas.YYYY-MM-DD+json"
    selects the latest version of the operation on or before that date.
    application/json, */* or no Accept behave as 2023-01-01.  A date before
    the operation's first version, a malformed vnd.atlas type, an impossible
    date or an Accept without any JSON type -> 406
    {"detail":"Invalid accept header or version date.","error":406,
     "errorCode":"INVALID_VERSION_DATE","parameters":[],"reason":"Not Acceptable"}
    (the answer real Atlas gives).  A version whose sunset is on or before
    "today" -> 410 VERSION_GONE.  v1.0 and OAuth ignore Accept.
  * Headers as real answers carry them: successful answers, a 204 included,
    have Content-Type: application/vnd.atlas.<resolved>+json;charset=utf-8
    (v1.0: application/json;charset=utf-8); errors have application/json (as
    the spec's error responses do).  Deprecated versions add
    "Deprecation: Wed, 19 Feb 2025 00:00:00 GMT" and
    "Sunset: Thu, 1 Jul 2027 00:00:00 GMT" (the day is not zero-padded).  The
    invitation resources have only their deprecated 2023-01-01 version: the
    org invitations carry Deprecation: Wed, 19 Feb 2025, the project
    invitations Deprecation: Wed, 4 Oct 2023 (both as real answers).  Every
    deprecated version answers 410 VERSION_GONE once "today" is on or after
    its sunset.  400, 404 and 409 answers
    carry X-Error-Code: <errorCode>.
  * Order of checks: auth (401) -> the credential's organizations (401) ->
    token bucket (429) -> fault rules -> route (404/405) -> version (406/410)
    -> path id syntax (400) -> request body (415/400) -> existence (404) ->
    business rules (400/409) -> action.
  * Version 2023-01-01 (and v1.0) only see ACTIVE users: PENDING/other users
    answer 404 USER_NOT_FOUND there and are left out of 2023 list answers.
    2023 list answers ignore the username/orgMembershipStatuses filters
    ("not supported in deprecated versions").
  * Errors (ApiError, keys sorted as Atlas emits them):
      malformed groupId in path     400 INVALID_GROUP_ID "An invalid group ID <x> was specified."
      other malformed path ids      400 VALIDATION_ERROR + badRequestDetail.fields
      group missing                 404 GROUP_NOT_FOUND "No group with ID <id> exists."
      org missing                   404 ORG_NOT_FOUND "No organization with ID <id> exists."
      team missing (in that org)    404 TEAM_NOT_FOUND "Team <teamId> could not be found in organization <orgId>."
      user id unknown / invisible   404 USER_NOT_FOUND "No user with ID <id> exists."
      user not in the org           404 USER_NOT_IN_ORG
      user in org, not in project   404 USER_NOT_FOUND (names user and project)
      user not in the team          404 RESOURCE_NOT_FOUND (user id in detail and parameters)
      invitation missing            404 INVITATION_NOT_FOUND (GUESS: the code is undocumented)
      last user of a team           400 CANNOT_REMOVE_LAST_USER_FROM_TEAM (its HTTP status is
                                        undocumented; 400 is a GUESS: the spec lists no 409
                                        for either team removal)
      last Organization Owner       409 CANNOT_REMOVE_LAST_ORG_OWNER (GUESS: Atlas refuses,
                                        the code and status are undocumented)
      last Project Owner            409 CANNOT_REMOVE_LAST_PROJECT_OWNER (GUESS, as above)
      bad query parameter           400 INVALID_QUERY_PARAMETER
      :removeUser wrong media type  415 UNSUPPORTED_MEDIA_TYPE
      :removeUser bad JSON / no id  400 INVALID_JSON / VALIDATION_ERROR
      unknown route                 404 RESOURCE_NOT_FOUND "Cannot find resource <path>."
      known path, wrong method      405 METHOD_NOT_ALLOWED (+ Allow)
    config null_parameters: true sends "parameters": null instead of [] (real
    answers do so at times); "all" sends null in every error body.
  * 401 answers: the real body, pretty-printed as Atlas (Jackson) does, keys in
    the order error, reason, detail, errorCode, no "parameters":
      {
        "error" : 401,
        "reason" : "Unauthorized",
        "detail" : "You are not authorized for this resource.",
        "errorCode" : "UNEXPECTED_ERROR"
      }
    config legacy_401_body: true leaves errorCode out (older answers).  Every
    401 carries a fresh digest challenge.
  * Owners and teams (Atlas: every org keeps an Organization Owner, every
    project a Project Owner; the error codes are undocumented, see Errors):
      - project removal (v2 and v1.0) of a project's last ACTIVE GROUP_OWNER
        -> 409 CANNOT_REMOVE_LAST_PROJECT_OWNER;
      - org removal checks, in this order: the org's last ACTIVE ORG_OWNER ->
        409 CANNOT_REMOVE_LAST_ORG_OWNER; the last ACTIVE GROUP_OWNER of one of
        the org's projects -> 409 CANNOT_REMOVE_LAST_PROJECT_OWNER (GUESS); the
        last member of one of the org's teams -> 400
        CANNOT_REMOVE_LAST_USER_FROM_TEAM (GUESS: org removal no longer empties
        a team silently); nothing is removed when one fails;
      - PENDING owners are not counted and are never blocked (owner rules);
        team membership counts whatever the member's status.
  * Implied access, GET /groups/{groupId}/users (both versions):
    flattenTeams=true adds users who reach the project only through a team
    with a role in it (seed teams[].projects; GET /groups/{groupId}/teams lists
    those teams as TeamRole {links, roleNames, teamId});
    includeOrgUsers=true adds ORG_OWNER and ORG_READ_ONLY users of the org.
    Both default to false.  The roles such an added user shows are
    undocumented; GUESS from the spec's GroupUserResponse.roles: the union of
    its teams' roles in the project, plus GROUP_OWNER for an ORG_OWNER or
    GROUP_READ_ONLY for an ORG_READ_ONLY.  Users with a direct role show their
    direct roles only.
  * ACTIVE users in 2025-02-19 answers carry "mobileNumber": null when they
    have none (as real answers do).
  * Invitations (deprecated 2023-01-01 resources; answers are JSON arrays, not
    paginated; optional ?username= filter; entries without "links", as real
    answers): an org's invitations are its PENDING users
    (OrganizationInvitation), each with the invitation id = its user id - 1
    (as in every real recording); a project's invitations are its PENDING
    legacyProjectInvite users (GroupInvitation), whom the v2 user endpoints
    cannot see.  Project invitation ids are md5("group-invite/<groupId>/
    <userId>"), first 24 hex digits.  GUESSES: a legacy project invitee has no
    org invitation (it is no PENDING user of the org); INVITATION_EXPIRED/
    REJECTED users have no open invitation.  DELETE of a project invitation takes the person out of that
    project only (the org invitation stays); DELETE of an org invitation
    takes the person out of the org (with the team rule of org removals).
    Invitation deletions are not counted in removal_requests.
  * Federation: GET /orgs/{orgId}/federationSettings answers 200 with the
    spec's OrgFederationSettings for every org, as real Atlas does: an org
    seeded "federated": true has identityProviderStatus ACTIVE (fields from
    federationSettings override the defaults), any other
    {"federatedDomains":[],"hasRoleMappings":false,"id":...,
     "identityProviderId":null,"identityProviderStatus":"INACTIVE"}.
    For an ACTIVE org, GET /federationSettings/{id}/connectedOrgConfigs/{orgId}
    (ConnectedOrgConfig) and .../roleMappings (paginated
    AuthFederationRoleMapping: externalGroupName, id, roleAssignments) answer
    from the org's seed "roleMappings": [{"externalGroupName": "...",
    "roleAssignments": [{"orgId"|"groupId": ..., "role": ...}]}]; any other
    federation id or org answers 404 RESOURCE_NOT_FOUND (a GUESS).
    postAuthRoleGrants ["ORG_MEMBER"] and the role mapping ids are GUESSES.
    POST /__emulator/federation {"orgId", "federated", "roleMappings",
    "federationSettings"} changes an org's federation at run time.
  * Date: the Date header of every answer follows --today (config "today"):
    the configured day at the real time of day, so that a client reading
    Atlas's clock from it sees the emulated calendar (real Atlas's Date is its
    real clock).
  * GET /orgs/{orgId}/groups: the org's projects (paginated; ?name= is a
    case-insensitive prefix filter, as the spec says).
  * envelope=true: single-resource answers (errors too, 204 too) become
    HTTP 200 {"content": <body or {}>, "status": <code>}; list answers get a
    "status" key added (spec: lists use the results object as envelope).
    401 challenges are never enveloped.  pretty=true pretty-prints.
  * Faults are evaluated after authentication, the organization check and
    the token bucket, so digest handshakes and 429s never consume a fault.
    Global latency is slept before the request is processed (after metering).

Authentication
--------------
  * Digest as production: RFC 7616 MD5 with qop=auth required; an answer
    without qop (RFC 2069) is refused with a fresh challenge (stale=false).
    Nonces are self-validating (HMAC + issue time) and may be reused with any
    nc for nonce_ttl_s (config, default 300); an answer with correct
    credentials and an expired nonce gets 401 with stale=true (counted in
    digest_stale_challenges), so a client such as libcurl re-sends once per
    nonce expiry.
  * Credentials and organizations: a key pair or service account with
    "orgIds" is valid only for those organizations.  A request for a resource
    of another existing organization (its orgId, or the org of its groupId)
    answers 401 with the standard 401 body and a challenge, as real Atlas does
    for an org-scoped key; counted in org_scope_rejections, not in
    digest_challenges.  Unknown ids pass on to their 404.  GET /orgs and GET
    /groups list only the credential's organizations; GET /api/atlas/v2
    lists roles in them only; v1.0 byName is not scoped.  A credential
    without orgIds is valid everywhere.
  * Service accounts as production:
      - token endpoint rate limit: token_rate_limit (50) requests per rolling
        token_rate_window_s (60 s) for each (client IP address, client id)
        (client id: the Basic header's, or none); rate-limited attempts are
        not counted in the window and never grant; 429 RATE_LIMITED
        "Resource /api/oauth/token is limited to 50 requests every 1 minutes."
      - at most token_cap (100) active tokens per service account (issued,
        not expired, not revoked); past it the token endpoint answers 403
        {"error":"access_denied","error_description":"Access Token limit
        reached. Please use the existing Access Tokens or create a new Service
        Account."} (counter token_cap_denied);
      - token creation and revocation are subject to no access list.
    Issued tokens are JWT-shaped opaque strings (~700 chars).  Tokens survive
    /__emulator/reset (they stay valid while their service account exists),
    but the reset forgets the active-token accounting and the rate windows, so
    that one test file cannot starve the next.

Rate limits (token buckets; config rate_limits)
-----------------------------------------------
  Atlas meters v2 endpoints with a token bucket per endpoint set and scope.
  The grouping into sets is a GUESS (Atlas does not publish the emulated
  sets); the table above names each route's set.  Sets and scopes:
    org_users      orgId     (path api/atlas/v2/orgs/{orgId}/users)
    project_users  groupId   (api/atlas/v2/groups/{groupId}/users)
    teams          orgId     (api/atlas/v2/orgs/{orgId}/teams)
    orgs           orgId: /orgs/{orgId}, its groups, federation settings and
                   connected org configs, and the org's invitations (real answers:
                   GET /orgs/{orgId} counts down the same bucket as the
                   invitations)   (api/atlas/v2/orgs)
    org_list       the client IP, GET /orgs   (api/atlas/v2/orgs)
    projects       groupId, or the client IP for GET /groups  (api/atlas/v2/groups)
    invites        groupId  (api/atlas/v2/groups/{groupId}/invites)
    v1             GROUP-ID, or the client IP for byName  (api/atlas/v1.0)
  GET /api/atlas/v2, GET /api/atlas/v2/rateLimits and the OAuth routes are not
  metered (for rateLimits a GUESS).
  * GET /api/atlas/v2/rateLimits (listRateLimits, 2025-03-12) lists every set
    per scope kind as the spec's PaginatedRateLimitEndpointSets: endpointSetId
    "<set>_<scope>" (organization, group, ip), endpoints [{method, path}] (the
    route templates), scope ORGANIZATION / GROUP / IP, capacity, refillRate and
    refillDurationSeconds {"value": ...} as configured.  Its query filters are
    ignored (a choice).  Config "listed": false makes it answer 404
    RESOURCE_NOT_FOUND (an Atlas without the endpoint: a GUESS).  The path is the
  set's, as the 429 body names it (the example of real answers:
  "api/atlas/v2/orgs"); that ids are not filled in is a GUESS.
  * Defaults: capacity 500 (org_users, orgs), 300 (org_list), 1200
    (project_users, teams, projects, invites), 100 (v1) - the capacities of
    real answers (v1 and the project-scoped invitations' are GUESSES); the
    refill (undocumented: a GUESS) is the whole capacity every 60 s.
  * Refill is DISCRETE (a GUESS): a bucket is created full at its first
    request; every refill_seconds after that, refill_rate tokens come back, up
    to the capacity.
  * Only authenticated requests take a token: a digest 401 challenge, a bad
    token and a 401 for another organization cost none (a choice).  Every
    other answer of a metered route (2xx or error, a 429 too) carries
    Ratelimit-Limit: <capacity> and Ratelimit-Remaining: <tokens left after
    this request> (spelled as real answers do) unless "headers" is false;
    401s and the unknown-group 404 (GROUP_NOT_FOUND) carry none, as real
    answers.
  * An empty bucket answers 429, Retry-After: ceil(seconds to the next
    refill) (>= 1; only on these 429s; left out when retry_after_header is
    false) and
      {"detail":"Rate limit exceeded for <path>. Please retry after N seconds.
       Request capacity: C. Refill rate: R per P seconds.","error":429,
       "errorCode":"RATE_LIMITED_TOKEN_BUCKET","parameters":[<path>,N,C,R,P],
       "reason":"Too Many Requests"}
    (P printed without ".0" when whole, as a fractional number otherwise).
  * Config (partial updates merge; a set whose limits change, or every set
    when "enabled" changes, starts again with full buckets):
      "rate_limits": {"enabled": true, "headers": true,
                      "retry_after_header": true, "listed": true,
                      "sets": {"<set>": {"capacity": C, "refill_rate": R,
                                         "refill_seconds": P}}}
    C >= 1, R >= 0 (integers), P > 0 (may be fractional).

Hostile modes (config)
----------------------
  * reflect_headers: true - every error answer (API errors, 401s, 429s and the
    OAuth token endpoint's errors) appends " Request headers: Name: value; ..."
    with every request header, Authorization included, to its detail /
    error_description (a misconfigured proxy, or something posing as Atlas).
  * endless_pages: {"enabled": false, "page_bytes": 0, "delay_ms": 0,
    "match": null, "next_host": null}: every paginated list answer that
    matches (match as a fault rule's: null = every list route, "METHOD
    substring", a substring of the request target or a route template)
    answers every page with a next link to pageNum+1 forever, after delay_ms,
    with valid results (clones of the route's real entries, ids
    "e0<page, 8 hex><index, 14 hex>") padded to about page_bytes (0: as many
    as itemsPerPage); totalCount always exceeds what was sent.  next_host
    ("other.example" or "https://other.example:8443") makes the next link
    point at another host.  pretty=true is ignored on such pages.

Counters (GET /__emulator/counters; control calls are never counted)
--------------------------------------------------------------------
  requests_total          every API request (OAuth endpoints and 401s included)
  requests_by_route       {"METHOD /route/template": {"<status>": n}}; unknown
                          routes under "METHOD (unmatched)"; non-HTTP outcomes use
                          the keys "reset", "hang", "client_closed"
  requests_by_status      {"<status>": n}, same keys
  requests_by_principal   {"digest:<public key>": n, "bearer:<client id>": n}: requests
                          that authenticated (whatever came after: 401 for another
                          org, 429, faults, errors)
  removal_requests        requests to the 5 removal routes, whatever the outcome
                          (digest 401 challenges included)
  digest_challenges       401s sent to requests without a Bearer header (no or a
                          Digest/other Authorization); digest_stale_challenges: of
                          those, stale=true
  bearer_rejections       401s sent to requests with a Bearer header
  org_scope_rejections    401s for a credential used on another organization
  rate_limited            429s from token buckets; rate_limited_by_set {"<set>": n}
  token_requests / token_grants / token_rate_limited / token_cap_denied / revocations
  issued_tokens_valid     issued tokens not yet expired nor revoked (since start)
  active_tokens_by_client {"<client id>": n}: the token cap's accounting (since reset)
  tcp_connections         distinct connections that carried at least one API request
                          since the last counter reset (a kept-alive connection opened
                          before the reset counts once when it is used again);
                          tls_connections: those on the TLS listener
  connections_accepted    every accepted connection (control ones too);
                          tls_handshakes, tls_handshake_failures
  active_connections      open connections that have carried an API request
  in_flight_requests, max_concurrent_requests (peak in-flight API requests)
  faults_triggered        fault rules applied
  Counters are updated before the answer's first byte is sent, so a client that
  reads them right after its answer sees its request counted.

Control interface (no auth, /__emulator/..., both listeners, not counted)
-------------------------------------------------------------------------
  GET    /__emulator/health          {"ok": true, "pid": ...}
  GET    /__emulator/counters        counters (see above)
  POST   /__emulator/reset           counters, faults, config (back to the command-line
                                     values: latency 0 unless --latency-ms), token rate
                                     windows, active-token accounting, rate-limit
                                     buckets, request log, state (re-read the seed
                                     file); issued tokens stay valid
  POST   /__emulator/reset_counters  counters and request log only (buckets stay)
  GET    /__emulator/config          current config
  POST   /__emulator/config          any subset of {"latency_ms", "nonce_ttl_s",
                                      "token_ttl_s", "token_rate_limit",
                                      "token_rate_window_s", "token_cap", "today",
                                      "idle_timeout_s", "rate_limits",
                                      "legacy_401_body", "null_parameters",
                                      "reflect_headers", "endless_pages"}; rate_limits
                                     and endless_pages merge partial objects
  GET    /__emulator/rate_limits     the rate_limits config plus "buckets": [{set, scope
                                     (id or "ip:<address>"), path, capacity, refill_rate,
                                     refill_seconds, tokens (now), taken, next_refill_ms,
                                     age_ms, rate_limited (its 429s)}]
  DELETE /__emulator/rate_limits     forget every bucket (they start full again)
  GET    /__emulator/faults          rules with remaining counts and hits
  POST   /__emulator/faults          {"faults": [rule, ...]} (appends)
  DELETE /__emulator/faults          clears
  GET    /__emulator/state[?user=<id|username>]
  POST   /__emulator/seed            replace state with the posted seed
  POST   /__emulator/users           bulk-create users -> {"ids": [...]}:
           {"count": n, "orgId": (default: the only org), "groupIds": [...],
            "teamIds": [...], "status": "ACTIVE", "prefix": "bulk",
            "orgRoles": ["ORG_MEMBER"], "groupRoles": ["GROUP_READ_ONLY"]};
           ids are "b0" + a 22-hex-digit counter (deterministic after a reset),
           usernames <prefix><counter, 5 digits>@example.com
  POST   /__emulator/scale           an organization at scale, in seconds:
           {"orgId": (default: a new org "5ca1e0<run, 18 hex>"), "users": 20000,
            "projects": 200, "teams": 300, "prefix": "scale", "credentials": null}
           -> {orgId, ownerId, users, projectIds, teamIds, firstUserId, lastUserId,
           run, seconds}.  "users" counts every person made, the owner included (a
           new org of 20,000 users lists in 40 pages of 500).  A new org is added to
           the orgIds of the org-scoped credentials named in "credentials" (public
           keys, client ids; null: all of them).  run counts scale calls since the
           reset; ids are deterministic: projects 5ca1e1<run, 6 hex><i, 12 hex>,
           teams 5ca1e2..., the owner 5ca1e3<run, 6 hex>000000000000, users
           5ca1e4<run, 6 hex><i, 12 hex> for i = 1 .. users-1.  User i
           (<prefix><i, 6 digits>@example.com, ACTIVE ORG_MEMBER) is GROUP_READ_ONLY
           in project i mod projects and a member of team i mod teams; team t has
           GROUP_READ_ONLY in project t mod projects; <prefix>.owner@example.com is
           ORG_OWNER, GROUP_OWNER of every new project and a member of every new
           team.  Takes about a second for 20,000 users.
  GET    /__emulator/requests?limit=n  last n (default 50; at most the last 50,000
           are kept) API requests, oldest first: {seq, time, conn (connection
           number), listener, method, path, route (template), status (the HTTP
           status sent: an enveloped 429 is a 200), version
           (resolved), duration_ms, principal ("digest:<key>" / "bearer:<id>" or
           null), token (the serial number, 1, 2, ..., of the bearer token a request
           sent, or of the token a token request was granted; null otherwise),
           rate_limit ({set, scope, remaining} or null), headers: {Accept,
           Content-Type, User-Agent, Authorization (scheme only)}, body
           (POST/PUT/PATCH; token/secret form fields masked)}; 429s are there with
           their time, so tests can count them per refill period
  POST   /__emulator/expire_tokens   every issued token expires now
  POST   /__emulator/service_accounts  {"client_id": ..., "client_secret": ...}: a new
           secret for a service account (rotation); tokens already issued stay valid
  Fault rule: {"kind": K, "count": 1 (-1 = forever), "match": "substring of
  the request target" | "METHOD substring" | route template, "auth": false,
  "latency_ms": 0, "process": false (run the real operation first, then
  fail), ...}.  A rule without "match" applies to every API request except
  /api/oauth/*; "auth": true (or a match containing "oauth") makes it apply
  there too.  The first matching rule with count left is consumed.  Kinds:
  status (status, error_code, detail, parameters, retry_after, headers),
  reset (RST, no answer), reset_mid_body (headers + half the body, then RST;
  half the head when there is no body), hang (seconds=600; ends early when
  the client closes or on shutdown), slow_body (interval_ms=50 per byte),
  malformed_json (status=500), html (status=502), empty (status=500),
  invalid_utf8 (status=400), oversized (status=500, size=10 MiB, streamed).
  Default error codes: 400 VALIDATION_ERROR, 403 IP_ADDRESS_NOT_ON_ACCESS_LIST,
  404 RESOURCE_NOT_FOUND, 429 RATE_LIMITED (error_code
  RATE_LIMITED_TOKEN_BUCKET gets Atlas' token-bucket detail), 500/502/504
  UNEXPECTED_ERROR, 503 SERVICE_UNAVAILABLE.  A status fault's answer carries
  the route's Ratelimit headers (the request took its token).
"""

import argparse
import base64
import calendar
import collections
import copy
import datetime
import email.utils
import functools
import hashlib
import hmac
import http
import itertools
import json
import math
import os
import re
import secrets
import signal
import socket
import socketserver
import ssl
import struct
import sys
import threading
import time
import traceback
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, quote, unquote

# --------------------------------------------------------------------------
# constants

REALM = "MMS Public API"
V2023 = "2023-01-01"
V2025 = "2025-02-19"
SUNSET = "2027-07-01"
ID_RE = re.compile(r"^[a-f0-9]{24}$")
STATUSES = ("ACTIVE", "PENDING", "INVITATION_EXPIRED", "INVITATION_REJECTED")
DEFAULT_STATUSES = ("ACTIVE", "PENDING")
REASONS = {s.value: s.phrase for s in http.HTTPStatus}
MAX_BODY = 64 * 1024 * 1024
SERVICE_VERSION = "gitHash=0000000000000000000000000000000000000000; versionString=emulator"
FAULT_KINDS = ("status", "reset", "reset_mid_body", "hang", "slow_body",
               "malformed_json", "html", "empty", "invalid_utf8", "oversized")
DEFAULT_ERROR_CODES = {
    400: "VALIDATION_ERROR", 401: "UNEXPECTED_ERROR",
    403: "IP_ADDRESS_NOT_ON_ACCESS_LIST", 404: "RESOURCE_NOT_FOUND",
    405: "METHOD_NOT_ALLOWED", 406: "INVALID_VERSION_DATE", 409: "CONFLICT",
    410: "VERSION_GONE", 429: "RATE_LIMITED", 500: "UNEXPECTED_ERROR",
    502: "UNEXPECTED_ERROR", 503: "SERVICE_UNAVAILABLE", 504: "UNEXPECTED_ERROR",
}

_ENC = json.JSONEncoder(separators=(",", ":"), sort_keys=True, ensure_ascii=False)
_ENC_PRETTY = json.JSONEncoder(indent=2, separators=(",", " : "), sort_keys=True,
                               ensure_ascii=False)


@functools.lru_cache(maxsize=64)
def http_date_of(day):
    """Midnight UTC of a YYYY-MM-DD day as real Atlas writes it in Deprecation and Sunset:
    the day of the month is not zero-padded ("Thu, 1 Jul 2027 00:00:00 GMT")."""
    d = datetime.date.fromisoformat(day)
    return "%s, %d %s %d 00:00:00 GMT" % (
        ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")[d.weekday()], d.day,
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
         "Dec")[d.month - 1], d.year)


def num(x):
    """A number as Atlas prints it: integers without ".0"."""
    x = float(x)
    return int(x) if x.is_integer() else x


def utc_today():
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


_date_cache = [0, ""]


def http_now(today=None):
    """The Date header: the real clock, or the time of day on the configured day."""
    if today is not None:
        d = datetime.date.fromisoformat(today)
        secs = int(time.time()) % 86400
        return email.utils.formatdate(
            calendar.timegm(d.timetuple()) + secs, usegmt=True)
    now = int(time.time())
    if now != _date_cache[0]:
        _date_cache[1] = email.utils.formatdate(now, usegmt=True)
        _date_cache[0] = now
    return _date_cache[1]


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def encode_json(obj, pretty=False):
    return ((_ENC_PRETTY if pretty else _ENC).encode(obj)).encode("utf-8")


class ApiErr(Exception):
    """An ApiError answer."""

    def __init__(self, status, code, detail, params=None, bad=None, headers=None):
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.params = list(params or [])
        self.bad = bad
        self.headers = list(headers or [])

    def body(self):
        b = {"detail": self.detail, "error": self.status, "errorCode": self.code,
             "parameters": self.params, "reason": REASONS.get(self.status, "Unknown")}
        if self.bad is not None:
            b["badRequestDetail"] = {"fields": self.bad}
        return b


UNAUTHORIZED_DETAIL = "You are not authorized for this resource."


def unauthorized_body(legacy=False, detail=UNAUTHORIZED_DETAIL):
    """The body real Atlas sends with a 401: pretty-printed (Jackson style), in the order
    error, reason, detail, errorCode, without "parameters"; older answers (legacy) had no
    errorCode."""
    b = {"error": 401, "reason": "Unauthorized", "detail": detail}
    if not legacy:
        b["errorCode"] = "UNEXPECTED_ERROR"
    return json.dumps(b, indent=2, separators=(",", " : "), ensure_ascii=False).encode("utf-8")


class Resp:
    __slots__ = ("status", "headers", "body", "counters")

    def __init__(self, status, body=b"", headers=None, counters=None):
        self.status = status
        self.body = body
        self.headers = headers if headers is not None else []
        self.counters = counters


# --------------------------------------------------------------------------
# operations and routes


class Version:
    __slots__ = ("date", "sunset", "deprecated")

    def __init__(self, date, sunset=None, deprecated=None):
        self.date = date
        self.sunset = sunset
        self.deprecated = deprecated


OLD = Version(V2023, SUNSET, V2025)   # deprecated 2023 version, sunset 2027-07-01
OLD_GROUP_INVITES = Version(V2023, SUNSET, "2023-10-04")  # real Deprecation: Wed, 4 Oct 2023
CUR = Version(V2025)
ONLY23 = Version(V2023)
V_RATE_LIMITS = Version("2025-03-12")


class Route:
    __slots__ = ("method", "template", "regex", "kind", "op", "versions", "removal", "key",
                 "rl_set", "rl_scope", "rl_path")

    def __init__(self, method, template, kind, op, versions=(), removal=False, rl=None):
        self.method = method
        self.template = template
        self.kind = kind          # "v2", "v1", "oauth"
        self.op = op
        self.versions = list(versions)
        self.removal = removal
        self.key = method + " " + template
        # rate limiting: (endpoint set, path parameter that scopes the bucket or None for
        # the client's IP address, the set's path as the 429 body names it)
        self.rl_set, self.rl_scope, self.rl_path = rl if rl is not None else (None, None, None)
        pieces = re.split(r"\{([A-Za-z-]+)\}", template)
        pat = "".join(re.escape(x) if i % 2 == 0 else "(?P<%s>[^/]+)" % x.replace("-", "_")
                      for i, x in enumerate(pieces))
        self.regex = re.compile("^" + pat + "$")


P2 = "/api/atlas/v2"
P1 = "/api/atlas/v1.0"
# endpoint sets (a GUESS of how Atlas groups its endpoints; see the docstring)
RL_ORG_USERS = ("org_users", "orgId", "api/atlas/v2/orgs/{orgId}/users")
RL_PROJECT_USERS = ("project_users", "groupId", "api/atlas/v2/groups/{groupId}/users")
RL_TEAMS = ("teams", "orgId", "api/atlas/v2/orgs/{orgId}/teams")
RL_ORGS_IP = ("org_list", None, "api/atlas/v2/orgs")
RL_ORGS = ("orgs", "orgId", "api/atlas/v2/orgs")
RL_PROJECTS_IP = ("projects", None, "api/atlas/v2/groups")
RL_PROJECTS = ("projects", "groupId", "api/atlas/v2/groups")
RL_ORG_INVITES = ("orgs", "orgId", "api/atlas/v2/orgs")   # real: GET /orgs/{orgId}'s bucket
RL_GROUP_INVITES = ("invites", "groupId", "api/atlas/v2/groups/{groupId}/invites")
RL_V1 = ("v1", "GROUP_ID", "api/atlas/v1.0")
RL_V1_IP = ("v1", None, "api/atlas/v1.0")
RATE_LIMIT_SETS = ("org_users", "project_users", "teams", "orgs", "org_list", "projects",
                   "invites", "v1")

ROUTES = [
    Route("GET", P2, "v2", "getSystemStatus", [ONLY23]),
    Route("GET", P2 + "/rateLimits", "v2", "listRateLimits", [V_RATE_LIMITS]),
    Route("GET", P2 + "/orgs", "v2", "listOrgs", [ONLY23], rl=RL_ORGS_IP),
    Route("GET", P2 + "/orgs/{orgId}", "v2", "getOrg", [ONLY23], rl=RL_ORGS),
    Route("GET", P2 + "/orgs/{orgId}/groups", "v2", "getOrgGroups", [ONLY23], rl=RL_ORGS),
    Route("GET", P2 + "/orgs/{orgId}/federationSettings", "v2", "getOrgFederationSettings",
          [ONLY23], rl=RL_ORGS),
    Route("GET", P2 + "/federationSettings/{federationSettingsId}/connectedOrgConfigs/{orgId}",
          "v2", "getConnectedOrgConfig", [ONLY23], rl=RL_ORGS),
    Route("GET", P2 + "/federationSettings/{federationSettingsId}/connectedOrgConfigs/{orgId}"
          "/roleMappings", "v2", "listRoleMappings", [ONLY23], rl=RL_ORGS),
    Route("GET", P2 + "/orgs/{orgId}/users", "v2", "listOrgUsers", [OLD, CUR], rl=RL_ORG_USERS),
    Route("GET", P2 + "/orgs/{orgId}/users/{userId}", "v2", "getOrgUser", [CUR],
          rl=RL_ORG_USERS),
    Route("DELETE", P2 + "/orgs/{orgId}/users/{userId}", "v2", "removeOrgUser",
          [OLD, CUR], removal=True, rl=RL_ORG_USERS),
    Route("GET", P2 + "/orgs/{orgId}/invites", "v2", "listOrgInvites", [OLD], rl=RL_ORG_INVITES),
    Route("GET", P2 + "/orgs/{orgId}/invites/{invitationId}", "v2", "getOrgInvite", [OLD],
          rl=RL_ORG_INVITES),
    Route("DELETE", P2 + "/orgs/{orgId}/invites/{invitationId}", "v2", "deleteOrgInvite", [OLD],
          rl=RL_ORG_INVITES),
    Route("GET", P2 + "/orgs/{orgId}/teams", "v2", "listOrgTeams", [ONLY23], rl=RL_TEAMS),
    Route("GET", P2 + "/orgs/{orgId}/teams/{teamId}", "v2", "getOrgTeam", [ONLY23], rl=RL_TEAMS),
    Route("GET", P2 + "/orgs/{orgId}/teams/{teamId}/users", "v2", "listOrgTeamUsers",
          [OLD, CUR], rl=RL_TEAMS),
    Route("DELETE", P2 + "/orgs/{orgId}/teams/{teamId}/users/{userId}", "v2",
          "removeOrgTeamUserFromTeam", [OLD], removal=True, rl=RL_TEAMS),
    Route("POST", P2 + "/orgs/{orgId}/teams/{teamId}:removeUser", "v2",
          "removeOrgTeamUser", [CUR], removal=True, rl=RL_TEAMS),
    Route("GET", P2 + "/groups", "v2", "listGroups", [ONLY23], rl=RL_PROJECTS_IP),
    Route("GET", P2 + "/groups/{groupId}", "v2", "getGroup", [ONLY23], rl=RL_PROJECTS),
    Route("GET", P2 + "/groups/{groupId}/teams", "v2", "listGroupTeams", [ONLY23],
          rl=RL_PROJECTS),
    Route("GET", P2 + "/groups/{groupId}/users", "v2", "listGroupUsers", [OLD, CUR],
          rl=RL_PROJECT_USERS),
    Route("GET", P2 + "/groups/{groupId}/users/{userId}", "v2", "getGroupUser", [CUR],
          rl=RL_PROJECT_USERS),
    Route("DELETE", P2 + "/groups/{groupId}/users/{userId}", "v2", "removeGroupUser",
          [OLD, CUR], removal=True, rl=RL_PROJECT_USERS),
    Route("GET", P2 + "/groups/{groupId}/invites", "v2", "listGroupInvites", [OLD_GROUP_INVITES],
          rl=RL_GROUP_INVITES),
    Route("GET", P2 + "/groups/{groupId}/invites/{invitationId}", "v2", "getGroupInvite", [OLD_GROUP_INVITES],
          rl=RL_GROUP_INVITES),
    Route("DELETE", P2 + "/groups/{groupId}/invites/{invitationId}", "v2", "deleteGroupInvite",
          [OLD_GROUP_INVITES], rl=RL_GROUP_INVITES),
    Route("DELETE", P1 + "/groups/{GROUP-ID}/users/{USER-ID}", "v1", "v1RemoveGroupUser",
          removal=True, rl=RL_V1),
    Route("GET", P1 + "/groups/{GROUP-ID}/users", "v1", "v1ListGroupUsers", rl=RL_V1),
    Route("GET", P1 + "/users/byName/{USERNAME}", "v1", "v1UserByName", rl=RL_V1_IP),
    Route("POST", "/api/oauth/token", "oauth", "token"),
    Route("POST", "/api/oauth/revoke", "oauth", "revoke"),
]


def match_route(method, path):
    """-> (route, params, allowed_methods)."""
    allowed = None
    for r in ROUTES:
        m = r.regex.match(path)
        if m is None:
            continue
        if r.method == method:
            return r, m.groupdict(), None
        if allowed is None:
            allowed = []
        allowed.append(r.method)
    return None, None, allowed


def parse_accept(accept):
    """Requested version date, or raise 406."""
    if accept is None or not accept.strip():
        return V2023
    generic = False
    for part in accept.split(","):
        mt = part.split(";", 1)[0].strip().lower()
        if not mt:
            continue
        if mt.startswith("application/vnd.atlas."):
            m = re.fullmatch(r"application/vnd\.atlas\.(\d{4}-\d{2}-\d{2})\+json", mt)
            if m is None:
                raise not_acceptable()
            try:
                datetime.date.fromisoformat(m.group(1))
            except ValueError:
                raise not_acceptable()
            return m.group(1)
        if mt in ("application/json", "*/*", "application/*"):
            generic = True
    if generic:
        return V2023
    raise not_acceptable()


def not_acceptable():
    return ApiErr(406, "INVALID_VERSION_DATE", "Invalid accept header or version date.")


def resolve_version(route, requested, today):
    chosen = None
    for v in route.versions:
        if v.date <= requested:
            chosen = v
    if chosen is None:
        raise not_acceptable()
    if chosen.sunset is not None and chosen.sunset <= today:
        raise ApiErr(410, "VERSION_GONE",
                     "Version %s of this resource has been sunset on %s and is no longer "
                     "available." % (chosen.date, chosen.sunset),
                     [chosen.date, chosen.sunset],
                     headers=[("Sunset", http_date_of(chosen.sunset))])
    return chosen


# --------------------------------------------------------------------------
# state


class SeedError(ValueError):
    pass


def _req_id(v, what):
    if not isinstance(v, str) or not ID_RE.match(v):
        raise SeedError("%s: %r is not 24 lowercase hex digits" % (what, v))
    return v


def _org_scope(cred, what):
    """The orgIds a credential is valid for: a set, or None (every organization)."""
    ids = cred.get("orgIds")
    if ids is None:
        return None
    if not isinstance(ids, list):
        raise SeedError("%s: orgIds must be a list" % what)
    return {_req_id(i, what + ".orgIds[]") for i in ids}


class State:
    """Orgs, projects, teams, users, credentials.  Caller holds the lock."""

    def __init__(self, seed, previous=None):
        if not isinstance(seed, dict):
            raise SeedError("seed must be a JSON object")
        self.orgs = {}
        self.projects = {}
        self.teams = {}
        self.users = {}
        self.by_username = {}
        self.org_members = {}      # orgId -> {userId: None} (ordered)
        self.project_members = {}  # groupId -> {userId: None}
        self.org_projects = {}     # orgId -> [groupId]
        self.org_teams = {}        # orgId -> [teamId]
        self.user_teams = {}       # userId -> {teamId: None} (index of team membership)
        self.gen = 0               # bumped by every membership change (list cache key)
        self.list_cache = {}
        self.team_pos = {}         # teamId -> position in its org's list
        self.project_pos = {}      # groupId -> position in its org's list
        self.api_keys = {}         # public -> {"private":..., "id":..., "orgs": set|None}
        self.service_accounts = {}  # client_id -> {"secret":..., "orgs": set|None}
        self.bulk_seq = 0
        self.scale_seq = 0
        for o in seed.get("orgs", []):
            oid = _req_id(o.get("id"), "orgs[].id")
            fed = o.get("federationSettings")
            if fed is not None and not isinstance(fed, dict):
                raise SeedError("org %s: federationSettings must be an object" % oid)
            rm = o.get("roleMappings", [])
            if not isinstance(rm, list):
                raise SeedError("org %s: roleMappings must be a list" % oid)
            self.orgs[oid] = {"id": oid, "name": str(o.get("name", "org-" + oid[-4:])),
                              "federated": bool(o.get("federated", False) or fed),
                              "federationSettings": fed, "roleMappings": rm}
            self.org_members[oid] = {}
            self.org_projects[oid] = []
            self.org_teams[oid] = []
        for p in seed.get("projects", []):
            gid = _req_id(p.get("id"), "projects[].id")
            oid = _req_id(p.get("orgId"), "projects[].orgId")
            if oid not in self.orgs:
                raise SeedError("project %s: unknown org %s" % (gid, oid))
            self.projects[gid] = {"id": gid, "orgId": oid,
                                  "name": str(p.get("name", "project-" + gid[-4:])),
                                  "created": p.get("created", "2024-01-01T00:00:00Z")}
            self.project_members[gid] = {}
            self.project_pos[gid] = len(self.org_projects[oid])
            self.org_projects[oid].append(gid)
        for t in seed.get("teams", []):
            tid = _req_id(t.get("id"), "teams[].id")
            oid = _req_id(t.get("orgId"), "teams[].orgId")
            if oid not in self.orgs:
                raise SeedError("team %s: unknown org %s" % (tid, oid))
            roles = t.get("projects") or {}
            if not isinstance(roles, dict):
                raise SeedError("team %s: projects must be {groupId: [roles]}" % tid)
            for gid, rs in roles.items():
                if self.projects.get(gid, {}).get("orgId") != oid:
                    raise SeedError("team %s: project %s is not in org %s" % (tid, gid, oid))
                if not isinstance(rs, list) or not rs:
                    raise SeedError("team %s: roles of project %s must be a list" % (tid, gid))
            self.teams[tid] = {"id": tid, "orgId": oid,
                               "name": str(t.get("name", "team-" + tid[-4:])), "members": {},
                               "projects": {g: list(r) for g, r in roles.items()}}
            self.team_pos[tid] = len(self.org_teams[oid])
            self.org_teams[oid].append(tid)
        for u in seed.get("users", []):
            self.add_user(u)
        for t in seed.get("teams", []):
            team = self.teams[t["id"]]
            for uid in t.get("userIds", []):
                _req_id(uid, "teams[].userIds[]")
                user = self.users.get(uid)
                if user is None:
                    raise SeedError("team %s: unknown user %s" % (team["id"], uid))
                self._ensure_org(user, team["orgId"])
                self.add_team_member(team["id"], uid)
        if "api_keys" in seed or previous is None:
            for k in seed.get("api_keys", []):
                pub, priv = k.get("public_key"), k.get("private_key")
                if not isinstance(pub, str) or not isinstance(priv, str) or not pub:
                    raise SeedError("api_keys[] needs public_key and private_key")
                self.api_keys[pub] = {"private": priv,
                                      "id": k.get("id") or hashlib.md5(pub.encode()).hexdigest()[:24],
                                      "orgs": _org_scope(k, "api_keys[%s]" % pub)}
        else:
            self.api_keys = previous.api_keys
        if "service_accounts" in seed or previous is None:
            for s in seed.get("service_accounts", []):
                cid, sec = s.get("client_id"), s.get("client_secret")
                if not isinstance(cid, str) or not isinstance(sec, str) or not cid:
                    raise SeedError("service_accounts[] needs client_id and client_secret")
                self.service_accounts[cid] = {"secret": sec,
                                              "orgs": _org_scope(s, "service_accounts[%s]" % cid)}
        else:
            self.service_accounts = previous.service_accounts

    # -- building

    def _ensure_org(self, user, oid):
        if oid not in user["orgs"]:
            user["orgs"][oid] = ["ORG_MEMBER"]
            self.org_members[oid][user["id"]] = None
            self.gen += 1

    def add_user(self, u):
        uid = _req_id(u.get("id"), "users[].id")
        if uid in self.users:
            raise SeedError("duplicate user id %s" % uid)
        username = u.get("username")
        if not isinstance(username, str) or not username:
            raise SeedError("user %s: username missing" % uid)
        if username.lower() in self.by_username:
            raise SeedError("duplicate username %s" % username)
        status = u.get("status", "ACTIVE")
        if status not in STATUSES:
            raise SeedError("user %s: bad status %r" % (uid, status))
        local = username.split("@")[0]
        user = {
            "id": uid, "username": username, "status": status,
            "firstName": u.get("firstName", local.split(".")[0].capitalize() or "User"),
            "lastName": u.get("lastName", "Example"),
            "country": u.get("country", "US"),
            "mobileNumber": u.get("mobileNumber"),
            "createdAt": u.get("createdAt", "2024-01-15T09:30:00Z"),
            "lastAuth": u.get("lastAuth", "2025-06-01T12:00:00Z"),
            "invitationCreatedAt": u.get("invitationCreatedAt", None if status == "ACTIVE"
                                         else "2025-06-01T08:00:00Z"),
            "invitationExpiresAt": u.get("invitationExpiresAt", None if status == "ACTIVE"
                                         else "2025-07-01T08:00:00Z"),
            "inviterUsername": u.get("inviterUsername", None if status == "ACTIVE"
                                     else "owner@example.com"),
            "legacyProjectInvite": bool(u.get("legacyProjectInvite", False)),
            "orgs": {}, "projects": {},
        }
        self.users[uid] = user
        self.by_username[username.lower()] = uid
        self.gen += 1
        for oid, roles in (u.get("orgs") or {}).items():
            if oid not in self.orgs:
                raise SeedError("user %s: unknown org %s" % (uid, oid))
            user["orgs"][oid] = list(roles or ["ORG_MEMBER"])
            self.org_members[oid][uid] = None
        for gid, roles in (u.get("projects") or {}).items():
            p = self.projects.get(gid)
            if p is None:
                raise SeedError("user %s: unknown project %s" % (uid, gid))
            self._ensure_org(user, p["orgId"])
            user["projects"][gid] = list(roles or ["GROUP_READ_ONLY"])
            self.project_members[gid][uid] = None
        return user

    def bulk_create(self, spec):
        try:
            count = int(spec.get("count", 1))
        except (TypeError, ValueError):
            raise SeedError("count must be an integer")
        if count < 0 or count > 1000000:
            raise SeedError("count out of range")
        oid = spec.get("orgId")
        if oid is None:
            if len(self.orgs) != 1:
                raise SeedError("orgId required")
            oid = next(iter(self.orgs))
        if oid not in self.orgs:
            raise SeedError("unknown org %s" % oid)
        gids = list(spec.get("groupIds") or [])
        tids = list(spec.get("teamIds") or [])
        for g in gids:
            if self.projects.get(g, {}).get("orgId") != oid:
                raise SeedError("project %s is not in org %s" % (g, oid))
        for t in tids:
            if self.teams.get(t, {}).get("orgId") != oid:
                raise SeedError("team %s is not in org %s" % (t, oid))
        status = spec.get("status", "ACTIVE")
        if status not in STATUSES:
            raise SeedError("bad status %r" % status)
        prefix = str(spec.get("prefix", "bulk"))
        org_roles = list(spec.get("orgRoles") or ["ORG_MEMBER"])
        group_roles = list(spec.get("groupRoles") or ["GROUP_READ_ONLY"])
        ids = []
        while len(ids) < count:
            self.bulk_seq += 1
            n = self.bulk_seq
            uid = "b0%022x" % n
            username = "%s%05d@example.com" % (prefix, n)
            if uid in self.users or username.lower() in self.by_username:
                continue
            user = self.add_user({
                "id": uid, "username": username, "status": status,
                "firstName": prefix.capitalize(), "lastName": "User%d" % n,
                "orgs": {oid: org_roles}, "projects": {g: group_roles for g in gids}})
            for t in tids:
                self.add_team_member(t, uid)
            ids.append(user["id"])
        return ids

    def dump(self):
        users = []
        for u in self.users.values():
            d = {k: v for k, v in u.items() if v is not None}
            d["orgs"] = {k: list(v) for k, v in u["orgs"].items()}
            d["projects"] = {k: list(v) for k, v in u["projects"].items()}
            d["teamIds"] = self.user_team_ids(u)
            users.append(d)
        def scope(c):
            return {} if c["orgs"] is None else {"orgIds": sorted(c["orgs"])}

        return {
            "orgs": [{k: v for k, v in o.items() if v is not None} for o in self.orgs.values()],
            "projects": [dict(p) for p in self.projects.values()],
            "teams": [{"id": t["id"], "orgId": t["orgId"], "name": t["name"],
                       "userIds": list(t["members"]),
                       "projects": {g: list(r) for g, r in t["projects"].items()}}
                      for t in self.teams.values()],
            "users": users,
            "api_keys": [dict({"public_key": k, "id": v["id"]}, **scope(v))
                         for k, v in self.api_keys.items()],
            "service_accounts": [dict({"client_id": c}, **scope(v))
                                 for c, v in self.service_accounts.items()],
        }

    def add_team_member(self, tid, uid):
        self.gen += 1
        self.teams[tid]["members"][uid] = None
        self.user_teams.setdefault(uid, {})[tid] = None

    def remove_team_member(self, tid, uid):
        self.gen += 1
        self.teams[tid]["members"].pop(uid, None)
        self.user_teams.get(uid, {}).pop(tid, None)

    def user_team_ids(self, u, oid=None):
        """The user's teams (in oid, or in all its orgs), in the orgs' team order."""
        mine = self.user_teams.get(u["id"])
        if not mine:
            return []
        orgs = [oid] if oid is not None else list(u["orgs"])
        out = []
        for o in orgs:
            ts = [t for t in mine if self.teams[t]["orgId"] == o]
            if len(ts) > 1:
                pos = self.team_pos
                ts.sort(key=lambda t: pos[t])
            out += ts
        return out

    def user_group_roles(self, u, oid):
        """[{groupId, groupRoles}] of the user in the org's projects, in the org's order."""
        gids = [g for g in u["projects"] if self.projects[g]["orgId"] == oid]
        if len(gids) > 1:
            pos = self.project_pos
            gids.sort(key=lambda g: pos[g])
        return [{"groupId": g, "groupRoles": list(u["projects"][g])} for g in gids]

    # -- lookups raising ApiErr

    def org(self, oid):
        o = self.orgs.get(oid)
        if o is None:
            raise ApiErr(404, "ORG_NOT_FOUND", "No organization with ID %s exists." % oid, [oid])
        return o

    def group(self, gid):
        p = self.projects.get(gid)
        if p is None:
            raise ApiErr(404, "GROUP_NOT_FOUND", "No group with ID %s exists." % gid, [gid])
        return p

    def team(self, oid, tid):
        t = self.teams.get(tid)
        if t is None or t["orgId"] != oid:
            raise ApiErr(404, "TEAM_NOT_FOUND",
                         "Team %s could not be found in organization %s." % (tid, oid),
                         [tid, oid])
        return t

    def user(self, uid, version):
        u = self.users.get(uid)
        if u is None or u["legacyProjectInvite"] or (version == V2023 and u["status"] != "ACTIVE"):
            raise ApiErr(404, "USER_NOT_FOUND", "No user with ID %s exists." % uid, [uid])
        return u

    def user_in_org(self, u, oid, team_op=False):
        ok = oid in u["orgs"]
        if ok and team_op and u["status"] in ("INVITATION_EXPIRED", "INVITATION_REJECTED"):
            ok = False
        if not ok:
            raise ApiErr(404, "USER_NOT_IN_ORG",
                         "User %s is not a member of organization %s." % (u["id"], oid),
                         [u["id"], oid])

    # -- owner and team rules (undocumented answers: GUESSES, see the docstring)

    def _active_with_role(self, uids, roles_of, role):
        return [i for i in uids
                if self.users[i]["status"] == "ACTIVE" and role in roles_of(self.users[i])]

    def check_last_project_owner(self, u, gid):
        """409 CANNOT_REMOVE_LAST_PROJECT_OWNER when u is the project's last ACTIVE owner."""
        if u["status"] != "ACTIVE" or "GROUP_OWNER" not in u["projects"].get(gid, ()):
            return
        owners = self._active_with_role(self.project_members[gid],
                                        lambda x: x["projects"].get(gid, ()), "GROUP_OWNER")
        if owners == [u["id"]]:
            raise ApiErr(409, "CANNOT_REMOVE_LAST_PROJECT_OWNER",
                         "Cannot remove user %s from project %s: they are its last Project "
                         "Owner." % (u["id"], gid), [u["id"], gid])

    def check_org_removal(self, u, oid):
        """The rules an org removal meets, in this order: last Organization Owner (409),
        last Project Owner of one of the org's projects (409), last member of one of the
        org's teams (400)."""
        uid = u["id"]
        if u["status"] == "ACTIVE" and "ORG_OWNER" in u["orgs"].get(oid, ()):
            owners = self._active_with_role(self.org_members[oid],
                                            lambda x: x["orgs"].get(oid, ()), "ORG_OWNER")
            if owners == [uid]:
                raise ApiErr(409, "CANNOT_REMOVE_LAST_ORG_OWNER",
                             "Cannot remove user %s from organization %s: they are its last "
                             "Organization Owner." % (uid, oid), [uid, oid])
        for gra in self.user_group_roles(u, oid):
            self.check_last_project_owner(u, gra["groupId"])
        for tid in self.user_team_ids(u, oid):
            if len(self.teams[tid]["members"]) == 1:
                raise ApiErr(400, "CANNOT_REMOVE_LAST_USER_FROM_TEAM",
                             "Cannot remove user %s: they are the last user of team %s." %
                             (uid, tid), [uid, tid])

    # -- removals

    def remove_group_user(self, gid, uid, version):
        p = self.group(gid)
        u = self.user(uid, version)
        self.user_in_org(u, p["orgId"])
        if gid not in u["projects"]:
            raise ApiErr(404, "USER_NOT_FOUND",
                         "User %s (%s) is not a member of project %s." % (uid, u["username"], gid),
                         [uid, gid])
        self.check_last_project_owner(u, gid)
        del u["projects"][gid]
        self.project_members[gid].pop(uid, None)
        self.gen += 1

    def remove_org_user(self, oid, uid, version):
        self.org(oid)
        u = self.user(uid, version)
        self.user_in_org(u, oid)
        self.check_org_removal(u, oid)
        self._drop_from_org(u, oid)

    def _drop_from_org(self, u, oid):
        uid = u["id"]
        self.gen += 1
        del u["orgs"][oid]
        self.org_members[oid].pop(uid, None)
        for gra in self.user_group_roles(u, oid):
            del u["projects"][gra["groupId"]]
            self.project_members[gra["groupId"]].pop(uid, None)
        for tid in self.user_team_ids(u, oid):
            self.remove_team_member(tid, uid)

    def remove_team_user(self, oid, tid, uid, version):
        self.org(oid)
        t = self.team(oid, tid)
        u = self.user(uid, version)
        self.user_in_org(u, oid, team_op=True)
        if uid not in t["members"]:
            raise ApiErr(404, "RESOURCE_NOT_FOUND",
                         "Cannot find resource user %s in team %s." % (uid, tid), [uid, tid])
        if len(t["members"]) == 1:
            raise ApiErr(400, "CANNOT_REMOVE_LAST_USER_FROM_TEAM",
                         "Cannot remove user %s: they are the last user of team %s." % (uid, tid),
                         [uid, tid])
        self.remove_team_member(tid, uid)
        return u

    # -- invitations

    def org_invitations(self, oid):
        """[(invitationId, user)]: the open (PENDING) invitations to the org: its PENDING
        users (user id = invitation id + 1), not the users invited through the deprecated
        project-invitation endpoint."""
        out = []
        for uid in self.org_members[oid]:
            u = self.users[uid]
            if u["status"] == "PENDING" and not u["legacyProjectInvite"]:
                out.append((invitation_id("org", oid, uid), u))
        return out

    def group_invitations(self, gid):
        """[(invitationId, user)]: the open project invitations (legacyProjectInvite users)."""
        out = []
        for uid in self.project_members[gid]:
            u = self.users[uid]
            if u["legacyProjectInvite"] and u["status"] == "PENDING":
                out.append((invitation_id("group", gid, uid), u))
        return out

    def find_invitation(self, invites, inv_id, where):
        for i, u in invites:
            if i == inv_id:
                return u
        raise ApiErr(404, "INVITATION_NOT_FOUND",
                     "Invitation %s could not be found in %s." % (inv_id, where), [inv_id])

    def delete_org_invitation(self, oid, inv_id):
        self.org(oid)
        u = self.find_invitation(self.org_invitations(oid), inv_id, "organization " + oid)
        self.check_org_removal(u, oid)
        self._drop_from_org(u, oid)

    def delete_group_invitation(self, gid, inv_id):
        self.group(gid)
        u = self.find_invitation(self.group_invitations(gid), inv_id, "project " + gid)
        del u["projects"][gid]
        self.project_members[gid].pop(u["id"], None)
        self.gen += 1

    # -- scale

    def scale(self, spec):
        """POST /__emulator/scale: an organization of many users, projects and teams."""
        t0 = time.monotonic()

        def count(name, default, hi):
            try:
                n = int(spec.get(name, default))
            except (TypeError, ValueError):
                raise SeedError("%s must be an integer" % name)
            if n < 0 or n > hi:
                raise SeedError("%s out of range (0..%d)" % (name, hi))
            return n

        nusers = count("users", 20000, 1000000)   # the owner included
        if nusers < 1:
            raise SeedError("users must be at least 1 (the owner)")
        nprojects = count("projects", 200, 100000)
        nteams = count("teams", 300, 100000)
        prefix = str(spec.get("prefix", "scale"))
        if not re.fullmatch(r"[a-z0-9._-]{1,40}", prefix):
            raise SeedError("prefix must be 1-40 of a-z 0-9 . _ -")
        if ("%s.owner@example.com" % prefix) in self.by_username:
            raise SeedError("prefix %s was used already" % prefix)
        self.scale_seq += 1
        run = self.scale_seq
        oid = spec.get("orgId")
        if oid is None:
            oid = "5ca1e0%018x" % run
        _req_id(oid, "orgId")
        creds = spec.get("credentials")
        if creds is not None and not isinstance(creds, list):
            raise SeedError("credentials must be a list of public keys and client ids")
        if oid not in self.orgs:
            self.orgs[oid] = {"id": oid, "name": "%s-org-%d" % (prefix, run), "federated": False,
                              "federationSettings": None, "roleMappings": []}
            self.org_members[oid] = {}
            self.org_projects[oid] = []
            self.org_teams[oid] = []
            # a new org is valid for the org-scoped credentials named (default: all)
            for name, c in list(self.api_keys.items()) + list(self.service_accounts.items()):
                if c["orgs"] is not None and (creds is None or name in creds):
                    c["orgs"].add(oid)
        gids = []
        for i in range(nprojects):
            gid = "5ca1e1%06x%012x" % (run, i)
            self.projects[gid] = {"id": gid, "orgId": oid, "name": "%s-project-%d" % (prefix, i),
                                  "created": "2024-01-01T00:00:00Z"}
            self.project_members[gid] = {}
            self.project_pos[gid] = len(self.org_projects[oid])
            self.org_projects[oid].append(gid)
            gids.append(gid)
        tids = []
        for i in range(nteams):
            tid = "5ca1e2%06x%012x" % (run, i)
            self.teams[tid] = {"id": tid, "orgId": oid, "name": "%s-team-%d" % (prefix, i),
                               "members": {}, "projects": {}}
            if gids:
                self.teams[tid]["projects"][gids[i % len(gids)]] = ["GROUP_READ_ONLY"]
            self.team_pos[tid] = len(self.org_teams[oid])
            self.org_teams[oid].append(tid)
            tids.append(tid)
        owner = self.add_user({
            "id": "5ca1e3%06x%012x" % (run, 0), "username": "%s.owner@example.com" % prefix,
            "firstName": "Scale", "lastName": "Owner", "orgs": {oid: ["ORG_OWNER"]},
            "projects": {g: ["GROUP_OWNER"] for g in gids}})
        for tid in tids:
            self.add_team_member(tid, owner["id"])
        first = last = None
        for i in range(1, nusers):
            uid = "5ca1e4%06x%012x" % (run, i)
            user = self.add_user({
                "id": uid, "username": "%s%06d@example.com" % (prefix, i),
                "firstName": prefix.capitalize(), "lastName": "User%d" % i,
                "orgs": {oid: ["ORG_MEMBER"]},
                "projects": {gids[i % len(gids)]: ["GROUP_READ_ONLY"]} if gids else {}})
            if tids:
                self.add_team_member(tids[i % len(tids)], uid)
            first = first or user["id"]
            last = user["id"]
        return {"orgId": oid, "ownerId": owner["id"], "users": nusers, "projectIds": gids,
                "teamIds": tids, "firstUserId": first, "lastUserId": last,
                "userIdFormat": "5ca1e4%06x%012x (run, index)", "run": run,
                "seconds": round(time.monotonic() - t0, 3)}


def invitation_id(kind, container, uid):
    """Deterministic invitation ids: an org invitation's id is its PENDING user's id - 1 (as
    in every real recording); a project invitation's is a hash."""
    if kind == "org":
        return "%024x" % ((int(uid, 16) - 1) % (1 << 96))
    return hashlib.md5(("%s-invite/%s/%s" % (kind, container, uid)).encode()).hexdigest()[:24]


# --------------------------------------------------------------------------
# representations


def org_user_view(st, u, oid):
    gra = st.user_group_roles(u, oid)
    d = {"id": u["id"], "username": u["username"], "orgMembershipStatus": u["status"],
         "roles": {"orgRoles": list(u["orgs"].get(oid, [])), "groupRoleAssignments": gra},
         "teamIds": st.user_team_ids(u, oid)}
    _status_fields(d, u)
    return d


def group_user_view(st, u, gid, roles=None):
    d = {"id": u["id"], "username": u["username"], "orgMembershipStatus": u["status"],
         "roles": list(u["projects"].get(gid, [])) if roles is None else list(roles)}
    _status_fields(d, u)
    return d


def _status_fields(d, u):
    if u["status"] == "ACTIVE":
        for k in ("country", "createdAt", "firstName", "lastAuth", "lastName"):
            if u.get(k) is not None:
                d[k] = u[k]
        d["mobileNumber"] = u.get("mobileNumber")   # real answers: null when there is none
    else:
        d["invitationCreatedAt"] = u["invitationCreatedAt"]
        d["invitationExpiresAt"] = u["invitationExpiresAt"]
        d["inviterUsername"] = u["inviterUsername"]


def app_user_view(st, u, base):
    """CloudAppUser (2023-01-01 and v1.0 shape)."""
    roles = []
    for oid, rs in u["orgs"].items():
        for r in rs:
            roles.append({"orgId": oid, "roleName": r})
    for gid, rs in u["projects"].items():
        for r in rs:
            roles.append({"groupId": gid, "roleName": r})
    d = {"country": u["country"], "createdAt": u["createdAt"], "emailAddress": u["username"],
         "firstName": u["firstName"], "id": u["id"], "lastAuth": u["lastAuth"],
         "lastName": u["lastName"],
         "links": [{"href": "%s/api/atlas/v2/users/%s" % (base, u["id"]), "rel": "self"}],
         "roles": roles, "teamIds": st.user_team_ids(u), "username": u["username"]}
    if u.get("mobileNumber"):
        d["mobileNumber"] = u["mobileNumber"]
    return d


# --------------------------------------------------------------------------
# request context helpers


class Query:
    def __init__(self, query):
        self.pairs = parse_qsl(query, keep_blank_values=True) if query else []
        self.multi = {}
        for k, v in self.pairs:
            self.multi.setdefault(k, []).append(v)

    def get(self, name, default=None):
        v = self.multi.get(name)
        return v[-1] if v else default

    def flag(self, name, default):
        v = self.get(name)
        if v is None:
            return default
        lv = v.lower()
        if lv == "true":
            return True
        if lv == "false":
            return False
        raise bad_query(name, v)

    def integer(self, name, default, lo, hi=None):
        v = self.get(name)
        if v is None:
            return default
        try:
            n = int(v)
        except ValueError:
            raise bad_query(name, v)
        if n < lo or (hi is not None and n > hi):
            raise bad_query(name, v, lo, hi)
        return n

    def statuses(self):
        plural = self.multi.get("orgMembershipStatuses")
        single = self.multi.get("orgMembershipStatus")
        if plural and single:
            raise ApiErr(400, "INVALID_QUERY_PARAMETER",
                         "orgMembershipStatus cannot be combined with orgMembershipStatuses.",
                         ["orgMembershipStatus", "orgMembershipStatuses"])
        vals = []
        for raw in (plural or single or []):
            for v in raw.split(","):
                v = v.strip()
                if not v:
                    continue
                if v not in STATUSES:
                    raise bad_query("orgMembershipStatuses", v)
                vals.append(v)
        return set(vals) if vals else set(DEFAULT_STATUSES)


def bad_query(name, value, lo=None, hi=None):
    detail = "Invalid query parameter %s specified." % name
    if lo is not None and hi is not None:
        detail += " The value must be between %d and %d." % (lo, hi)
    elif lo is not None:
        detail += " The value must be at least %d." % lo
    return ApiErr(400, "INVALID_QUERY_PARAMETER", detail, [name, value])


def check_id(value, name):
    if ID_RE.match(value):
        return value
    if name in ("groupId", "GROUP_ID"):
        raise ApiErr(400, "INVALID_GROUP_ID", "An invalid group ID %s was specified." % value,
                     [value])
    raise ApiErr(400, "VALIDATION_ERROR", "Invalid %s %s: must match ^([a-f0-9]{24})$." %
                 (name, value), [name, value],
                 bad=[{"field": name, "description": "must match \"^([a-f0-9]{24})$\""}])


def paginate(items, q, base, path, view=None):
    """Paginated list answer {links, results, totalCount}; view() renders only the page."""
    per = q.integer("itemsPerPage", 100, 1, 500)
    page = q.integer("pageNum", 1, 1)
    include_count = q.flag("includeCount", True)
    total = len(items)
    start = (page - 1) * per
    results = items[start:start + per]
    if view is not None:
        results = [view(x) for x in results]
    others = [(k, v) for k, v in q.pairs if k not in ("pageNum", "itemsPerPage")]

    def link(p, rel):
        qs = "&".join("%s=%s" % (quote(k, safe=""), quote(v, safe=",")) for k, v in others)
        qs = (qs + "&" if qs else "") + "pageNum=%d&itemsPerPage=%d" % (p, per)
        return {"href": "%s%s?%s" % (base, path, qs), "rel": rel}

    links = []
    if page > 1:
        links.append(link(page - 1, "previous"))
    links.append(link(page, "self"))
    if start + per < total:
        links.append(link(page + 1, "next"))
    body = {"links": links, "results": results}
    if include_count:
        body["totalCount"] = total
    return body


# --------------------------------------------------------------------------
# the emulator


# --------------------------------------------------------------------------
# rate limits (token buckets) and run-time configuration


def default_rate_limits():
    """Capacities seen in real answers: 500 on org-scoped sets, 300 on GET /orgs, 1200 on
    project and team sets; 100 for v1.0 (a GUESS); the refill (the whole capacity every
    60 s) is a GUESS."""
    caps = {"org_users": 500, "orgs": 500, "org_list": 300, "project_users": 1200,
            "teams": 1200, "projects": 1200, "invites": 1200}
    return {"enabled": True, "headers": True, "retry_after_header": True, "listed": True,
            "sets": {n: {"capacity": caps.get(n, 100), "refill_rate": caps.get(n, 100),
                         "refill_seconds": 60} for n in RATE_LIMIT_SETS}}


def default_endless_pages():
    return {"enabled": False, "page_bytes": 0, "delay_ms": 0, "match": None, "next_host": None}


def _bool(v, what):
    if not isinstance(v, bool):
        raise ValueError("%s must be true or false" % what)
    return v


def _number(v, what, lo, integer=False, hi=None):
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError("%s must be a number" % what)
    if integer and float(v) != int(v):
        raise ValueError("%s must be an integer" % what)
    if v < lo or (hi is not None and v > hi):
        raise ValueError("%s out of range" % what)
    return int(v) if integer else num(v)


def merge_rate_limits(cur, new):
    """Partial update of the rate_limits config -> a new dict (cur is left alone)."""
    if not isinstance(new, dict):
        raise ValueError("rate_limits must be an object")
    out = copy.deepcopy(cur)
    for k, v in new.items():
        if k in ("enabled", "headers", "retry_after_header", "listed"):
            out[k] = _bool(v, "rate_limits." + k)
        elif k == "sets":
            if not isinstance(v, dict):
                raise ValueError("rate_limits.sets must be an object")
            for name, lim in v.items():
                if name not in RATE_LIMIT_SETS:
                    raise ValueError("unknown endpoint set %r (known: %s)" %
                                     (name, ", ".join(RATE_LIMIT_SETS)))
                if not isinstance(lim, dict):
                    raise ValueError("rate_limits.sets.%s must be an object" % name)
                for lk, lv in lim.items():
                    what = "rate_limits.sets.%s.%s" % (name, lk)
                    if lk == "capacity":
                        out["sets"][name][lk] = _number(lv, what, 1, integer=True)
                    elif lk == "refill_rate":
                        out["sets"][name][lk] = _number(lv, what, 0, integer=True)
                    elif lk == "refill_seconds":
                        if isinstance(lv, (int, float)) and not isinstance(lv, bool) and lv <= 0:
                            raise ValueError("%s must be > 0" % what)
                        out["sets"][name][lk] = _number(lv, what, 0.001)
                    else:
                        raise ValueError("unknown key %s" % what)
        else:
            raise ValueError("unknown key rate_limits.%s" % k)
    return out


def merge_endless_pages(cur, new):
    if not isinstance(new, dict):
        raise ValueError("endless_pages must be an object")
    out = dict(cur)
    for k, v in new.items():
        what = "endless_pages." + k
        if k == "enabled":
            out[k] = _bool(v, what)
        elif k in ("page_bytes", "delay_ms"):
            out[k] = _number(v, what, 0, integer=(k == "page_bytes"), hi=256 * 1024 * 1024)
        elif k in ("match", "next_host"):
            if v is not None and (not isinstance(v, str) or not v):
                raise ValueError("%s must be a non-empty string or null" % what)
            out[k] = v
        else:
            raise ValueError("unknown key %s" % what)
    return out


def rule_matches(m, method, target, route_key, template):
    """A fault or endless_pages "match": None (everything), "METHOD rest", a substring of
    the request target, a route template or "METHOD template"."""
    if m is None:
        return True
    meth, sp, rest = m.partition(" ")
    if sp and meth.isupper() and meth.isalpha():
        if meth != method:
            return False
        m = rest
    return m in target or m == template or m == route_key


ENDLESS_MARK = "@@PG@@"


def endless_clone(t, i):
    d = dict(t)
    new_id = "e0" + ENDLESS_MARK + "%014x" % i
    for k in ("id", "teamId"):
        if k in d:
            d[k] = new_id
    for k in ("username", "emailAddress"):
        if k in d:
            d[k] = "endless.%s.%d@example.com" % (ENDLESS_MARK, i)
    if "name" in d:
        d["name"] = "%s-%s-%d" % (d["name"], ENDLESS_MARK, i)
    if "id" not in d and "teamId" not in d:
        d["id"] = new_id
    return d


class Bucket:
    """One token bucket.  Refill is DISCRETE (a GUESS): every refill_seconds from the
    bucket's creation (its first request), refill_rate tokens come back, up to capacity."""
    __slots__ = ("set", "scope", "path", "capacity", "refill_rate", "refill_seconds",
                 "created", "tokens", "refills", "limited", "taken")

    def __init__(self, name, scope, path, lim, now):
        self.set = name
        self.scope = scope
        self.path = path
        self.capacity = lim["capacity"]
        self.refill_rate = lim["refill_rate"]
        self.refill_seconds = float(lim["refill_seconds"])
        self.created = now
        self.tokens = self.capacity
        self.refills = 0          # refill periods already applied
        self.limited = 0          # 429s answered from this bucket
        self.taken = 0            # tokens taken

    def refill(self, now):
        k = int((now - self.created) / self.refill_seconds)
        if k > self.refills:
            self.tokens = min(self.capacity, self.tokens + (k - self.refills) * self.refill_rate)
            self.refills = k

    def next_refill_in(self, now):
        return self.created + (self.refills + 1) * self.refill_seconds - now

    def take(self, now):
        """-> (True, None) with a token taken, or (False, retry_after_seconds)."""
        self.refill(now)
        if self.tokens > 0:
            self.tokens -= 1
            self.taken += 1
            return True, None
        self.limited += 1
        return False, max(1, math.ceil(self.next_refill_in(now) - 1e-6))

    def view(self, now):
        self.refill(now)
        return {"set": self.set, "scope": self.scope, "path": self.path,
                "capacity": self.capacity, "refill_rate": self.refill_rate,
                "refill_seconds": num(self.refill_seconds), "tokens": self.tokens,
                "taken": self.taken,
                "next_refill_ms": round(max(0.0, self.next_refill_in(now)) * 1000, 1),
                "age_ms": round((now - self.created) * 1000, 1), "rate_limited": self.limited}


class Emulator:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.args = args
        self.verbose = args.verbose
        self.seed_path = args.seed
        self.defaults = {
            "latency_ms": float(args.latency_ms),
            "nonce_ttl_s": float(args.nonce_ttl_s),
            "token_ttl_s": float(args.token_ttl_s),
            "token_rate_limit": int(args.token_rate_limit),
            "token_rate_window_s": float(args.token_rate_window_s),
            "token_cap": int(args.token_cap),
            "today": args.today,
            "idle_timeout_s": float(args.idle_timeout_s),
            "rate_limits": default_rate_limits(),
            "legacy_401_body": False,
            "null_parameters": False,
            "reflect_headers": False,
            "endless_pages": default_endless_pages(),
        }
        self.cfg = copy.deepcopy(self.defaults)
        self.buckets = {}         # (set, scope) -> Bucket
        self.endless_cache = {}
        if getattr(args, "config", None):
            # --config: command-line defaults of any key (what /__emulator/reset restores)
            self.defaults = self.set_config(json.loads(args.config))
        self.state = State(self.read_seed())
        self.tokens = {}          # token -> [client_id, expires_monotonic, serial]
        self.token_serial = 0     # serial number of the last token issued
        self.active = {}          # client_id -> {token: None}: the token cap's accounting
        self.rate = {}            # (client IP, client id) -> deque of monotonic times
        self.faults = []
        self.nonce_key = secrets.token_bytes(32)
        self.log = collections.deque(maxlen=50000)
        self.seq = itertools.count(1)
        self.conn_seq = itertools.count(1)
        self.stop = threading.Event()
        self.in_flight = 0
        self.active_connections = 0
        self._zero_counters()

    # -- config / counters

    def read_seed(self):
        if not self.seed_path:
            return {}
        with open(self.seed_path, "r", encoding="utf-8") as f:
            return json.load(f)

    def _zero_counters(self):
        self.c = {
            "requests_total": 0, "removal_requests": 0, "digest_challenges": 0,
            "digest_stale_challenges": 0, "bearer_rejections": 0, "token_grants": 0,
            "token_requests": 0, "token_rate_limited": 0, "token_cap_denied": 0,
            "revocations": 0, "org_scope_rejections": 0, "rate_limited": 0,
            "tcp_connections": 0, "tls_connections": 0, "connections_accepted": 0,
            "tls_handshakes": 0, "tls_handshake_failures": 0, "faults_triggered": 0,
        }
        self.by_route = {}
        self.by_status = {}
        self.by_principal = {}
        self.rl_by_set = {}
        self.max_concurrent = self.in_flight
        self.log.clear()
        self.epoch = getattr(self, "epoch", 0) + 1

    def today(self):
        return self.cfg["today"] or utc_today()

    def counters(self):
        with self.lock:
            d = dict(self.c)
            d["requests_by_route"] = {k: dict(v) for k, v in self.by_route.items()}
            d["requests_by_status"] = dict(self.by_status)
            d["requests_by_principal"] = dict(self.by_principal)
            d["rate_limited_by_set"] = dict(self.rl_by_set)
            d["active_connections"] = self.active_connections
            d["in_flight_requests"] = self.in_flight
            d["max_concurrent_requests"] = self.max_concurrent
            now = time.monotonic()
            d["issued_tokens_valid"] = sum(1 for t in self.tokens.values() if t[1] > now)
            d["active_tokens_by_client"] = {c: self._active_count(c, now) for c in self.active}
            d["pid"] = os.getpid()
            return d

    def set_config(self, new):
        """Apply a partial config (validated as a whole: nothing changes on an error)."""
        if not isinstance(new, dict):
            raise ValueError("config must be a JSON object")
        with self.lock:
            cfg = copy.deepcopy(self.cfg)
            for k, v in new.items():
                if k not in cfg:
                    raise ValueError("unknown config key %r" % k)
                if k == "today":
                    if v is not None:
                        datetime.date.fromisoformat(v)
                    cfg[k] = v
                elif k in ("token_rate_limit", "token_cap"):
                    cfg[k] = _number(v, k, 0, integer=True)
                elif k in ("legacy_401_body", "reflect_headers"):
                    cfg[k] = _bool(v, k)
                elif k == "null_parameters":
                    if v not in (True, False, "all"):
                        raise ValueError("null_parameters must be true, false or \"all\"")
                    cfg[k] = v
                elif k == "rate_limits":
                    cfg[k] = merge_rate_limits(cfg[k], v)
                elif k == "endless_pages":
                    cfg[k] = merge_endless_pages(cfg[k], v)
                else:
                    cfg[k] = _number(v, k, 0)
            old = self.cfg["rate_limits"]
            rl = cfg["rate_limits"]
            if rl["enabled"] != old["enabled"]:
                self.buckets = {}
            else:
                # a set whose limits changed starts again with full buckets
                changed = {n for n in RATE_LIMIT_SETS if rl["sets"][n] != old["sets"][n]}
                if changed:
                    self.buckets = {k: b for k, b in self.buckets.items() if k[0] not in changed}
            self.cfg = cfg
            return copy.deepcopy(cfg)

    def reset(self, counters_only=False):
        if counters_only:
            with self.lock:
                self._zero_counters()
            return
        seed = self.read_seed()
        with self.lock:
            self.state = State(seed)
            self.faults = []
            self.cfg = copy.deepcopy(self.defaults)
            self.rate = {}
            self.active = {}
            self.buckets = {}
            self._zero_counters()

    # -- endless pages

    def endless_results(self, tmpl, per, page_bytes):
        """(JSON text of an endless page's results with the page number marked, count)."""
        key = (_ENC.encode(tmpl), per, page_bytes)
        with self.lock:
            hit = self.endless_cache.get(key)
        if hit is not None:
            return hit
        tmpl = tmpl or [{"id": "", "name": "endless"}]
        out, size, i = [], 2, 0
        while True:
            d = endless_clone(tmpl[i % len(tmpl)], i)
            out.append(d)
            size += len(_ENC.encode(d)) + 1
            i += 1
            if (page_bytes <= 0 and i >= per) or (page_bytes > 0 and size >= page_bytes):
                break
        text = (_ENC.encode(out), len(out))
        with self.lock:
            if len(self.endless_cache) > 16:
                self.endless_cache.clear()
            self.endless_cache[key] = text
        return text

    # -- rate limits

    def meter(self, route, params, client_ip):
        """Take a token from the route's bucket.  -> None (unmetered or disabled), or
        (bucket, allowed, retry_after).  Caller holds the lock."""
        rl = self.cfg["rate_limits"]
        if route is None or route.rl_set is None or not rl["enabled"]:
            return None
        scope = params.get(route.rl_scope) if route.rl_scope else None
        if scope is None:
            scope = "ip:" + client_ip
        key = (route.rl_set, scope)
        now = time.monotonic()
        b = self.buckets.get(key)
        if b is None:
            b = self.buckets[key] = Bucket(route.rl_set, scope, route.rl_path,
                                           rl["sets"][route.rl_set], now)
        ok, retry = b.take(now)
        if not ok:
            self.c["rate_limited"] += 1
            self.rl_by_set[route.rl_set] = self.rl_by_set.get(route.rl_set, 0) + 1
        return b, ok, retry

    def rate_limits_view(self):
        with self.lock:
            now = time.monotonic()
            rl = copy.deepcopy(self.cfg["rate_limits"])
            rl["buckets"] = [b.view(now) for b in self.buckets.values()]
            return rl

    # -- service-account token accounting

    def _active_count(self, client_id, now):
        """Active tokens of a service account (issued since the last reset, not expired,
        not revoked); prunes the others.  Caller holds the lock."""
        act = self.active.get(client_id)
        if not act:
            return 0
        for tok in [t for t in act if self.tokens.get(t, (None, 0.0))[1] <= now]:
            del act[tok]
        return len(act)

    # -- faults

    def add_faults(self, rules):
        norm = []
        for r in rules:
            if not isinstance(r, dict):
                raise ValueError("a fault rule must be an object")
            kind = r.get("kind")
            if kind not in FAULT_KINDS:
                raise ValueError("unknown fault kind %r" % (kind,))
            rule = dict(r)
            rule["count"] = int(r.get("count", 1))
            rule["hits"] = 0
            if "status" in rule:
                rule["status"] = int(rule["status"])
            elif kind == "status":
                raise ValueError("a status fault needs \"status\"")
            norm.append(rule)
        with self.lock:
            self.faults.extend(norm)
            return len(self.faults)

    def take_fault(self, method, target, route_key, template, is_oauth):
        if not self.faults:
            return None
        with self.lock:
            for r in self.faults:
                if r["count"] == 0:
                    continue
                m = r.get("match")
                if is_oauth and not r.get("auth") and (m is None or "oauth" not in m):
                    continue
                if not rule_matches(m, method, target, route_key, template):
                    continue
                if r["count"] > 0:
                    r["count"] -= 1
                r["hits"] += 1
                self.c["faults_triggered"] += 1
                return dict(r)
        return None

    # -- digest

    def new_nonce(self):
        # 8 random bytes | issue time (ms, masked) | MAC: opaque, self-validating
        rnd = secrets.token_bytes(8)
        mask = hmac.new(self.nonce_key, b"m" + rnd, hashlib.sha256).digest()[:8]
        ts = struct.pack(">Q", int(time.monotonic() * 1000))
        body = rnd + bytes(a ^ b for a, b in zip(ts, mask))
        mac = hmac.new(self.nonce_key, b"n" + rnd + ts, hashlib.sha256).digest()[:8]
        return base64.b64encode(body + mac).decode("ascii")

    def nonce_fresh(self, nonce):
        try:
            blob = base64.b64decode(nonce, validate=True)
        except (ValueError, TypeError):
            return False
        if len(blob) != 24:
            return False
        rnd, masked, mac = blob[:8], blob[8:16], blob[16:]
        mask = hmac.new(self.nonce_key, b"m" + rnd, hashlib.sha256).digest()[:8]
        ts = bytes(a ^ b for a, b in zip(masked, mask))
        good = hmac.new(self.nonce_key, b"n" + rnd + ts, hashlib.sha256).digest()[:8]
        if not hmac.compare_digest(mac, good):
            return False
        issued = struct.unpack(">Q", ts)[0] / 1000.0
        return time.monotonic() - issued <= self.cfg["nonce_ttl_s"]

    def verify_digest(self, header_rest, method, target):
        """-> ("ok", public key), ("stale", public key) or ("bad", None).  As production:
        qop=auth is required (an RFC 2069 answer without qop is refused)."""
        p = parse_auth_params(header_rest)
        username = p.get("username")
        nonce = p.get("nonce")
        response = p.get("response")
        uri = p.get("uri")
        if not username or not nonce or not response or uri is None:
            return "bad", None
        if p.get("realm") != REALM or uri != target:
            return "bad", None
        alg = p.get("algorithm")
        if alg is not None and alg.upper() != "MD5":
            return "bad", None
        key = self.state.api_keys.get(username)
        if key is None:
            return "bad", None
        qop = p.get("qop")
        if qop != "auth" or not p.get("nc") or p.get("cnonce") is None:
            return "bad", None
        ha1 = hashlib.md5(("%s:%s:%s" % (username, REALM, key["private"])).encode()).hexdigest()
        ha2 = hashlib.md5(("%s:%s" % (method, uri)).encode()).hexdigest()
        expect = hashlib.md5(("%s:%s:%s:%s:%s:%s" % (ha1, nonce, p["nc"], p["cnonce"],
                                                    qop, ha2)).encode()).hexdigest()
        if not hmac.compare_digest(expect, response.lower()):
            return "bad", None
        return ("ok" if self.nonce_fresh(nonce) else "stale"), username

    # -- tokens

    def issue_token(self, client_id):
        now = int(time.time())
        ttl = int(self.cfg["token_ttl_s"])
        header = {"alg": "RS256", "kid": "atlas-emulator", "typ": "JWT"}
        claims = {"actorId": client_id, "aud": "apiAtlas", "cid": client_id,
                  "exp": now + ttl, "iat": now, "iss": "https://cloud.mongodb.com",
                  "jti": str(uuid.uuid4()), "nbf": now, "scope": [],
                  "sub": client_id}
        tok = "%s.%s.%s" % (b64url(json.dumps(header, separators=(",", ":")).encode()),
                            b64url(json.dumps(claims, separators=(",", ":")).encode()),
                            b64url(secrets.token_bytes(256)))
        with self.lock:
            now_m = time.monotonic()
            cap = self.cfg["token_cap"]
            if cap > 0 and self._active_count(client_id, now_m) >= cap:
                return None, None
            self.token_serial += 1
            self.tokens[tok] = [client_id, now_m + self.cfg["token_ttl_s"], self.token_serial]
            self.active.setdefault(client_id, {})[tok] = None
            if len(self.tokens) > 100000:
                now_m = time.monotonic()
                self.tokens = {k: v for k, v in self.tokens.items() if v[1] > now_m}
        return tok, ttl

    def bearer_client(self, token):
        """The service account a valid token belongs to, or None."""
        t = self.tokens.get(token)
        if t is None or t[1] <= time.monotonic():
            return None
        return t[0] if t[0] in self.state.service_accounts else None


AUTH_PARAM_RE = re.compile(r'([A-Za-z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')
_UNESCAPE_RE = re.compile(r"\\(.)")


def parse_auth_params(s):
    out = {}
    for m in AUTH_PARAM_RE.finditer(s):
        k = m.group(1).lower()
        if m.group(2) is not None:
            out[k] = _UNESCAPE_RE.sub(r"\1", m.group(2))
        else:
            out[k] = m.group(3)
    return out


def parse_basic(header):
    if not header:
        return None
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        raw = base64.b64decode(rest.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    cid, sep, secret = raw.partition(":")
    if not sep:
        return None
    return cid, secret


def client_ok(accounts, creds):
    """Basic client credentials, taken as sent or (RFC 6749 2.3.1) form-url-decoded."""
    if creds is None:
        return None
    for cid, secret in (creds, tuple(unquote(x.replace("+", " ")) for x in creds)):
        known = accounts.get(cid)
        if known is not None and hmac.compare_digest(known["secret"].encode(), secret.encode()):
            return cid
    return None


# --------------------------------------------------------------------------
# HTTP layer


class BadRequest(Exception):
    pass


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "atlas-emulator"
    sys_version = ""
    disable_nagle_algorithm = True

    # -- connection lifecycle

    def setup(self):
        srv = self.server
        self.emu = srv.emu
        self.tls = srv.ssl_context is not None
        self.api_seen = False
        self.conn_id = next(self.emu.conn_seq)
        self.counted_epoch = -1
        self.cur_version = None
        self.acct = None
        self.aborted = False
        if self.tls:
            self.request.settimeout(30)
            try:
                self.request = srv.ssl_context.wrap_socket(self.request, server_side=True)
            except (OSError, ssl.SSLError):
                with self.emu.lock:
                    self.emu.c["tls_handshake_failures"] += 1
                raise
            with self.emu.lock:
                self.emu.c["tls_handshakes"] += 1
        idle = self.emu.cfg["idle_timeout_s"]
        self.timeout = idle if idle > 0 else None
        super().setup()

    def finish(self):
        try:
            super().finish()
        except OSError:
            pass
        finally:
            if self.api_seen:
                with self.emu.lock:
                    self.emu.active_connections -= 1
            if self.tls:
                try:
                    self.connection.close()
                except OSError:
                    pass

    def log_message(self, fmt, *args):
        if self.emu.verbose:
            sys.stderr.write("%s - %s\n" % (self.address_string(), fmt % args))

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (ConnectionError, ssl.SSLError, TimeoutError):
            self.close_connection = True

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_OPTIONS(self):
        self._dispatch("OPTIONS")

    # -- low level output

    def _head_bytes(self, status, headers, length):
        parts = ["HTTP/1.1 %d %s\r\nDate: %s\r\n" % (status, REASONS.get(status, "Unknown"),
                                                       http_now(self.emu.cfg["today"]))]
        for k, v in headers:
            parts.append("%s: %s\r\n" % (k, v))
        if length is not None:
            parts.append("Content-Length: %d\r\n" % length)
        if self.close_connection:
            parts.append("Connection: close\r\n")
        elif self.request_version == "HTTP/1.0":
            parts.append("Connection: keep-alive\r\n")
        parts.append("\r\n")
        return "".join(parts).encode("latin-1")

    def _write(self, resp):
        body = resp.body if self.command != "HEAD" else b""
        self.wfile.write(self._head_bytes(resp.status, resp.headers, len(resp.body)) + body)

    def _abort(self):
        """Close the connection with an RST (SO_LINGER 0), no answer."""
        self.aborted = True
        self.close_connection = True
        conn = self.connection
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        try:
            self.rfile.close()
        except OSError:
            pass
        try:
            conn.close()
        except OSError:
            pass

    def _read_body(self):
        te = self.headers.get("Transfer-Encoding")
        if te and "chunked" in te.lower():
            out = bytearray()
            while True:
                line = self.rfile.readline(1024)
                try:
                    size = int(line.split(b";")[0].strip(), 16)
                except ValueError:
                    raise BadRequest("bad chunk size")
                if size == 0:
                    while True:
                        t = self.rfile.readline(8192)
                        if t in (b"\r\n", b"\n", b""):
                            break
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline(8)
                if len(out) > MAX_BODY:
                    raise BadRequest("body too large")
        n = self.headers.get("Content-Length")
        if not n:
            return b""
        try:
            n = int(n)
        except ValueError:
            raise BadRequest("bad Content-Length")
        if n < 0 or n > MAX_BODY:
            raise BadRequest("bad Content-Length")
        data = self.rfile.read(n)
        if len(data) != n:
            raise BadRequest("short body")
        return data

    # -- dispatch

    def _dispatch(self, method):
        target = self.path
        # A test facility, not Atlas: a base URL with a path of its own,
        # /x/<segment>, as behind a reverse proxy; the segment is dropped,
        # so base URLs of any length reach the same emulated Atlas.
        if target.startswith("/x/"):
            rest = target[3:]
            cut = rest.find("/")
            target = rest[cut:] if cut >= 0 else "/"
            self.path = target
        try:
            body = self._read_body()
        except BadRequest as e:
            self.close_connection = True
            self._write(Resp(400, encode_json({"error": str(e)}),
                             [("Content-Type", "application/json")]))
            return
        if target.startswith("/__emulator/") or target == "/__emulator":
            self._control(method, target, body)
        else:
            self._api(method, target, body)

    def _api(self, method, target, body):
        emu = self.emu
        t0 = time.monotonic()
        with emu.lock:
            emu.in_flight += 1
            if emu.in_flight > emu.max_concurrent:
                emu.max_concurrent = emu.in_flight
            if not self.api_seen:
                self.api_seen = True
                emu.active_connections += 1
            if self.counted_epoch != emu.epoch:
                # distinct connections that carried API requests since the last counter reset
                self.counted_epoch = emu.epoch
                emu.c["tcp_connections"] += 1
                if self.tls:
                    emu.c["tls_connections"] += 1
            cfg = emu.cfg
        self.cur_version = None
        self.principal = None       # "digest:<public key>" / "bearer:<client id>"
        self.principal_orgs = None  # the orgs the credential is valid for (None: all)
        self.token_used = None      # serial of the bearer token sent, or of the one granted
        self.rl_headers = []
        self.rl_log = None
        path, _, query = target.partition("?")
        route, params, allowed = match_route(method, path)
        self.cur_route = route
        self.acct = (t0, method, target, route, body)
        try:
            q = Query(query)
            envelope = (q.get("envelope") or "").lower() == "true"
            pretty = (q.get("pretty") or "").lower() == "true"
            route_key = route.key if route is not None else method + " (unmatched)"
            template = route.template if route is not None else None
            fault = None
            if path.startswith("/api/oauth/"):
                fault = emu.take_fault(method, target, route_key, template, True)

                def real():
                    return self._oauth(route, allowed, method, path, body)
            elif path.startswith("/api/atlas/"):
                denied = self._authenticate(method, target, path.startswith(P1 + "/"))
                if denied is None:
                    denied = self._gate(route, params, envelope, pretty)
                if denied is None:
                    fault = emu.take_fault(method, target, route_key, template, False)

                def real():
                    if denied is not None:
                        return denied
                    return self._atlas(route, params, allowed, method, path, q, body,
                                       envelope, pretty)
            else:
                fault = emu.take_fault(method, target, route_key, template, False)

                def real():
                    return self._finish_error(ApiErr(404, "RESOURCE_NOT_FOUND",
                                                     "Cannot find resource %s." % path, [path]),
                                              None, envelope, pretty)
            delay = cfg["latency_ms"] + (float(fault.get("latency_ms", 0)) if fault else 0)
            if delay > 0:
                emu.stop.wait(delay / 1000.0)
            def produce():
                resp = self._safe(real)
                # real answers: the unknown-group 404 carries no rate-limit headers
                if not any(k == "X-Error-Code" and v == "GROUP_NOT_FOUND"
                           for k, v in resp.headers):
                    resp.headers.extend(self.rl_headers)
                return resp

            if fault is None:
                resp = produce()
                self._account(str(resp.status), resp)
                self._write(resp)
            else:
                self._run_fault(fault, produce, envelope, pretty)
        except (ConnectionError, ssl.SSLError, TimeoutError, OSError):
            self.close_connection = True
        finally:
            if self.acct is not None:
                self._account("client_closed", None)
            with emu.lock:
                emu.in_flight -= 1

    def _account(self, status_key, resp):
        """Count one API request.  Called once, before the first byte of the answer goes
        out, so a client that reads the counters right after its answer sees it counted."""
        t0, method, target, route, body = self.acct
        self.acct = None
        emu = self.emu
        dt = time.monotonic() - t0
        version = self.cur_version
        route_key = route.key if route is not None else method + " (unmatched)"
        with emu.lock:
            c = emu.c
            c["requests_total"] += 1
            if self.principal is not None:
                bp = emu.by_principal
                bp[self.principal] = bp.get(self.principal, 0) + 1
            if route is not None:
                if route.removal:
                    c["removal_requests"] += 1
                if route.op == "token":
                    c["token_requests"] += 1
            if resp is not None and resp.counters:
                for name in resp.counters:
                    c[name] += 1
            br = emu.by_route.get(route_key)
            if br is None:
                br = emu.by_route[route_key] = {}
            br[status_key] = br.get(status_key, 0) + 1
            emu.by_status[status_key] = emu.by_status.get(status_key, 0) + 1
            entry = {
                "seq": next(emu.seq), "time": round(time.time(), 3), "conn": self.conn_id,
                "listener": "https" if self.tls else "http", "method": method,
                "path": target, "route": route.template if route is not None else None,
                "status": status_key,
                "version": version.date if version is not None else None,
                "duration_ms": round(dt * 1000, 3),
                "headers": self._logged_headers(),
                "principal": self.principal,
                "token": self.token_used,
                "rate_limit": self.rl_log,
            }
            if method in ("POST", "PUT", "PATCH") and body:
                entry["body"] = _mask_body(body)
            emu.log.append(entry)
        if emu.verbose:
            sys.stderr.write("%s %s %s %s -> %s %.1fms\n" % (
                self.client_address[0], "https" if self.tls else "http", method,
                target, status_key, dt * 1000))

    def _safe(self, fn):
        """Run a response producer; a bug becomes a 500 ApiError (and a traceback)."""
        try:
            return fn()
        except (ConnectionError, ssl.SSLError, TimeoutError):
            raise
        except Exception:
            traceback.print_exc(file=sys.stderr)
            return self._finish_error(ApiErr(500, "UNEXPECTED_ERROR", "Unexpected error."),
                                      None, False, False)

    def _logged_headers(self):
        h = self.headers
        out = {}
        for name in ("Accept", "Content-Type", "User-Agent"):
            v = h.get(name)
            if v is not None:
                out[name] = v
        a = h.get("Authorization")
        if a is not None:
            out["Authorization"] = a.strip().split(" ", 1)[0]
        return out

    # -- authentication

    def _authenticate(self, method, target, legacy):
        emu = self.emu
        h = self.headers.get("Authorization")
        bearer = False
        stale = False
        if h:
            scheme, _, rest = h.strip().partition(" ")
            s = scheme.lower()
            if s == "bearer":
                bearer = True
                client = None if legacy else emu.bearer_client(rest.strip())
                t = emu.tokens.get(rest.strip())
                self.token_used = t[2] if t is not None else None
                if client is not None:
                    self.principal = "bearer:" + client
                    self.principal_orgs = emu.state.service_accounts[client]["orgs"]
                    return None
            elif s == "digest":
                res, user = emu.verify_digest(rest, method, target)
                if res == "ok":
                    self.principal = "digest:" + user
                    self.principal_orgs = emu.state.api_keys[user]["orgs"]
                    return None
                stale = res == "stale"
        counters = ["bearer_rejections"] if bearer else (
            ["digest_challenges", "digest_stale_challenges"] if stale else ["digest_challenges"])
        return self._unauthorized(stale, counters)

    def _unauthorized(self, stale, counters):
        """A 401 with a fresh digest challenge and the real 401 body."""
        nonce = self.emu.new_nonce()
        headers = [
            ("WWW-Authenticate", 'Digest realm="%s", domain="", nonce="%s", algorithm=MD5, '
                                 'qop="auth", stale=%s' % (REALM, nonce,
                                                           "true" if stale else "false")),
            ("Content-Type", "application/json"),
        ]
        body = unauthorized_body(self.emu.cfg["legacy_401_body"],
                                 self._reflect(UNAUTHORIZED_DETAIL))
        return Resp(401, body, headers, counters)

    def _reflect(self, text):
        """reflect_headers (a misconfigured proxy): the request's headers, Authorization
        included, appended to an error's text."""
        if not self.emu.cfg["reflect_headers"]:
            return text
        return "%s Request headers: %s" % (text, "; ".join(
            "%s: %s" % (k, v) for k, v in self.headers.items()))

    def _gate(self, route, params, envelope, pretty):
        """After authentication: the credential's organizations (401), then the route's
        token bucket (429).  -> None to go on, or the answer."""
        if route is None:
            return None
        emu = self.emu
        with emu.lock:
            if self.principal_orgs is not None:
                oid = params.get("orgId")
                gid = params.get("groupId") or params.get("GROUP_ID")
                if oid is None and gid is not None:
                    oid = emu.state.projects.get(gid, {}).get("orgId")
                # an existing org the credential is not valid for (unknown ids go on to 404)
                if oid in emu.state.orgs and oid not in self.principal_orgs:
                    return self._unauthorized(False, ["org_scope_rejections"])
            m = emu.meter(route, params, self.client_address[0])
            if m is None:
                return None
            b, ok, retry = m
            rl = emu.cfg["rate_limits"]
            if rl["headers"]:
                self.rl_headers = [("Ratelimit-Limit", str(b.capacity)),
                                   ("Ratelimit-Remaining", str(b.tokens))]
            self.rl_log = {"set": b.set, "scope": b.scope, "remaining": b.tokens}
            if ok:
                return None
            per = num(b.refill_seconds)
            err = ApiErr(429, "RATE_LIMITED_TOKEN_BUCKET",
                         "Rate limit exceeded for %s. Please retry after %d seconds. Request "
                         "capacity: %d. Refill rate: %d per %s seconds." %
                         (b.path, retry, b.capacity, b.refill_rate, per),
                         [b.path, retry, b.capacity, b.refill_rate, per])
            if rl["retry_after_header"]:
                err.headers.append(("Retry-After", str(retry)))
        return self._finish_error(err, None, envelope, pretty)

    # -- atlas API

    def _error_body(self, err):
        """An ApiError body with the configured variations (null_parameters, reflect)."""
        body = err.body()
        np = self.emu.cfg["null_parameters"]
        if np == "all" or (np and not body["parameters"]):
            body["parameters"] = None
        body["detail"] = self._reflect(body["detail"])
        return body

    def _finish_error(self, err, version, envelope, pretty):
        headers = list(err.headers)
        if version is not None and version.deprecated:
            headers += [("Deprecation", http_date_of(version.deprecated)),
                        ("Sunset", http_date_of(version.sunset))]
        if err.status in (400, 404, 409):
            headers.append(("X-Error-Code", err.code))
        body = self._error_body(err)
        status = err.status
        if envelope:
            body = {"content": body, "status": status}
            status = 200
        headers.append(("Content-Type", "application/json"))
        headers.append(("X-MongoDB-Service-Version", SERVICE_VERSION))
        return Resp(status, encode_json(body, pretty), headers)

    def _atlas(self, route, params, allowed, method, path, q, body, envelope, pretty):
        """-> Resp (the resolved version is left in self.cur_version)."""
        emu = self.emu
        version = None
        try:
            if route is None:
                if allowed:
                    raise ApiErr(405, "METHOD_NOT_ALLOWED",
                                 "Method %s is not allowed for resource %s." % (method, path),
                                 [method, path], headers=[("Allow", ", ".join(sorted(set(allowed))))])
                raise ApiErr(404, "RESOURCE_NOT_FOUND", "Cannot find resource %s." % path, [path])
            if route.kind == "v2":
                version = resolve_version(route, parse_accept(self.headers.get("Accept")),
                                          emu.today())
            self.endless = None
            status, obj = getattr(self, "op_" + route.op)(params, q, body, version)
            if self.endless is not None:
                obj = self._endless_page(q, envelope)
        except ApiErr as e:
            self.cur_version = version
            return self._finish_error(e, version, envelope, pretty)
        headers = []
        if version is not None:
            ctype = "application/vnd.atlas.%s+json;charset=utf-8" % version.date
            if version.deprecated:
                headers += [("Deprecation", http_date_of(version.deprecated)),
                            ("Sunset", http_date_of(version.sunset))]
        else:
            ctype = "application/json;charset=utf-8"
        headers.append(("X-MongoDB-Service-Version", SERVICE_VERSION))
        self.cur_version = version
        if isinstance(obj, bytes):    # an endless page, rendered already
            headers.append(("Content-Type", ctype))
            return Resp(status, obj, headers)
        if envelope:
            if obj is None:
                obj = {"content": {}, "status": status}
            elif isinstance(obj, dict) and "results" in obj:
                obj = dict(obj)
                obj["status"] = status
            else:
                obj = {"content": obj, "status": status}
            status = 200
        headers.append(("Content-Type", ctype))   # real answers: a 204 carries one too
        if obj is None:
            return Resp(status, b"", headers)
        return Resp(status, encode_json(obj, pretty), headers)

    # -- list answers, and the endless_pages hostile mode

    def _paginate(self, items, q, base, path, view=None):
        ep = self.emu.cfg["endless_pages"]
        if ep["enabled"] and rule_matches(ep["match"], self.command, self.path,
                                          self.cur_route.key, self.cur_route.template):
            tmpl = items[:20]
            self.endless = ([view(x) for x in tmpl] if view is not None else
                            [dict(x) for x in tmpl], base, path, ep)
        return paginate(items, q, base, path, view)

    def _endless_page(self, q, envelope):
        """A page with a next link (pageNum+1), padded with valid results to about
        page_bytes, after delay_ms."""
        tmpl, base, path, ep = self.endless
        per = q.integer("itemsPerPage", 100, 1, 500)
        page = q.integer("pageNum", 1, 1)
        include_count = q.flag("includeCount", True)
        results, n = self.emu.endless_results(tmpl, per, ep["page_bytes"])
        results = results.replace(ENDLESS_MARK, "%08x" % (page & 0xffffffff))
        others = [(k, v) for k, v in q.pairs if k not in ("pageNum", "itemsPerPage")]

        def link(p, rel, host=None):
            qs = "&".join("%s=%s" % (quote(k, safe=""), quote(v, safe=",")) for k, v in others)
            qs = (qs + "&" if qs else "") + "pageNum=%d&itemsPerPage=%d" % (p, per)
            b = base
            if host:
                b = host if "://" in host else ("https://" if self.tls else "http://") + host
            return {"href": "%s%s?%s" % (b, path, qs), "rel": rel}

        links = ([link(page - 1, "previous")] if page > 1 else []) + [
            link(page, "self"), link(page + 1, "next", ep["next_host"])]
        out = '{"links":%s,"results":%s%s%s}' % (
            _ENC.encode(links), results, ',"status":200' if envelope else "",
            ',"totalCount":%d' % ((page + 1) * n) if include_count else "")
        if ep["delay_ms"] > 0:
            self.emu.stop.wait(ep["delay_ms"] / 1000.0)
        return out.encode("utf-8")

    def _base(self):
        host = self.headers.get("Host")
        if not host:
            a = self.server.server_address
            host = "%s:%d" % (a[0], a[1])
        return ("https://" if self.tls else "http://") + host

    # each op_* returns (status, obj-or-None) and runs under the state lock

    def op_getSystemStatus(self, p, q, body, v):
        with self.emu.lock:
            api_key = None
            a = self.headers.get("Authorization", "")
            if a.lower().startswith("digest"):
                user = parse_auth_params(a.partition(" ")[2]).get("username")
                k = self.emu.state.api_keys.get(user)
                if k is not None:
                    roles = [{"orgId": o, "roleName": "ORG_OWNER"} for o in self.emu.state.orgs
                             if k["orgs"] is None or o in k["orgs"]]
                    api_key = {"accessList": [], "id": k["id"], "publicKey": user,
                               "roles": roles}
        return 200, {"apiKey": api_key, "appName": "MongoDB Atlas",
                     "build": "0000000000000000000000000000000000000000",
                     "links": [{"href": self._base() + P2, "rel": "self"}],
                     "throttling": False}

    def op_listOrgs(self, p, q, body, v):
        base = self._base()
        with self.emu.lock:
            items = [{"id": o["id"], "isDeleted": False,
                      "links": [{"href": "%s%s/orgs/%s" % (base, P2, o["id"]), "rel": "self"}],
                      "name": o["name"], "skipDefaultAlertsSettings": False}
                     for o in self.emu.state.orgs.values() if self._may_see(o["id"])]
        return 200, self._paginate(items, q, base, P2 + "/orgs")

    def op_getOrg(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        base = self._base()
        with self.emu.lock:
            o = self.emu.state.org(oid)
            return 200, {"id": o["id"], "isDeleted": False,
                         "links": [{"href": "%s%s/orgs/%s" % (base, P2, oid), "rel": "self"}],
                         "name": o["name"], "skipDefaultAlertsSettings": False}

    def op_listGroups(self, p, q, body, v):
        base = self._base()
        with self.emu.lock:
            items = [self._group_view(g, base) for g in self.emu.state.projects.values()
                     if self._may_see(g["orgId"])]
        return 200, self._paginate(items, q, base, P2 + "/groups")

    def _may_see(self, oid):
        return self.principal_orgs is None or oid in self.principal_orgs

    def op_getOrgGroups(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        base = self._base()
        name = q.get("name")
        with self.emu.lock:
            st = self.emu.state
            st.org(oid)
            items = [self._group_view(st.projects[g], base) for g in st.org_projects[oid]
                     if name is None or st.projects[g]["name"].lower().startswith(name.lower())]
        return 200, self._paginate(items, q, base, "%s/orgs/%s/groups" % (P2, oid))

    def op_getOrgFederationSettings(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        with self.emu.lock:
            return 200, self._federation(self.emu.state.org(oid))

    @staticmethod
    def _federation(o):
        """OrgFederationSettings: 200 for every org, INACTIVE without an identity provider
        (the real answer)."""
        h = hashlib.md5(("federation/" + o["id"]).encode()).hexdigest()
        if not o["federated"]:
            return {"federatedDomains": [], "hasRoleMappings": False, "id": h[:24],
                    "identityProviderId": None, "identityProviderStatus": "INACTIVE"}
        d = {"federatedDomains": ["example.com"], "hasRoleMappings": bool(o["roleMappings"]),
             "id": h[:24], "identityProviderId": h[4:24], "identityProviderStatus": "ACTIVE"}
        d.update(o["federationSettings"] or {})
        return d

    def _connected_org(self, p):
        """The org of a connectedOrgConfigs path, when it is connected to that federation."""
        fid = check_id(p["federationSettingsId"], "federationSettingsId")
        oid = check_id(p["orgId"], "orgId")
        o = self.emu.state.org(oid)
        fed = self._federation(o)
        if fed["identityProviderStatus"] != "ACTIVE" or fed["id"] != fid:
            # the answer for an org not connected is undocumented: a GUESS
            raise ApiErr(404, "RESOURCE_NOT_FOUND",
                         "Cannot find resource connected org config %s in federation %s." %
                         (oid, fid), [oid, fid])
        return o, fed

    def _role_mappings(self, o):
        out = []
        for i, m in enumerate(o["roleMappings"]):
            rid = hashlib.md5(("role-mapping/%s/%d" % (o["id"], i)).encode()).hexdigest()
            out.append({"externalGroupName": m.get("externalGroupName"), "id": rid[:24],
                        "roleAssignments": list(m.get("roleAssignments", []))})
        return out

    def op_getConnectedOrgConfig(self, p, q, body, v):
        with self.emu.lock:
            o, fed = self._connected_org(p)
            return 200, {"dataAccessIdentityProviderIds": [],
                         "domainAllowList": list(fed["federatedDomains"]),
                         "domainRestrictionEnabled": bool(o.get("domainRestriction", False)),
                         "identityProviderId": fed["identityProviderId"], "orgId": o["id"],
                         "postAuthRoleGrants": ["ORG_MEMBER"],
                         "roleMappings": self._role_mappings(o), "userConflicts": None}

    def op_listRoleMappings(self, p, q, body, v):
        with self.emu.lock:
            o, fed = self._connected_org(p)
            items = self._role_mappings(o)
        return 200, self._paginate(items, q, self._base(),
                                   "%s/federationSettings/%s/connectedOrgConfigs/%s/roleMappings"
                                   % (P2, fed["id"], o["id"]))

    def op_listRateLimits(self, p, q, body, v):
        """listRateLimits: every emulated endpoint set, per scope, with the configured
        capacity and refill (PaginatedRateLimitEndpointSets)."""
        rl = self.emu.cfg["rate_limits"]
        if not rl["listed"]:
            # an Atlas without the endpoint: what it answers is a GUESS
            raise ApiErr(404, "RESOURCE_NOT_FOUND", "Cannot find resource %s." % self.path,
                         [self.path])
        scopes = {"orgId": "ORGANIZATION", "groupId": "GROUP", "GROUP_ID": "GROUP", None: "IP"}
        sets = {}
        for r in ROUTES:
            if r.rl_set is None:
                continue
            key = (r.rl_set, scopes[r.rl_scope])
            sets.setdefault(key, []).append({"method": r.method, "path": r.template})
        items = []
        for (name, scope), eps in sorted(sets.items()):
            lim = rl["sets"][name]
            items.append({"capacity": {"value": lim["capacity"]},
                          "endpointSetId": "%s_%s" % (name, scope.lower()),
                          "endpointSetName": "%s (%s)" % (name, scope.lower()),
                          "endpoints": eps, "refillDurationSeconds":
                          {"value": num(lim["refill_seconds"])},
                          "refillRate": {"value": lim["refill_rate"]}, "scope": scope})
        return 200, self._paginate(items, q, self._base(), P2 + "/rateLimits")

    def op_listGroupTeams(self, p, q, body, v):
        gid = check_id(p["groupId"], "groupId")
        base = self._base()
        with self.emu.lock:
            st = self.emu.state
            g = st.group(gid)
            items = [{"links": [{"href": "%s%s/groups/%s/teams/%s" % (base, P2, gid, t),
                                 "rel": "self"}],
                      "roleNames": list(st.teams[t]["projects"][gid]), "teamId": t}
                     for t in st.org_teams[g["orgId"]] if gid in st.teams[t]["projects"]]
        return 200, self._paginate(items, q, base, "%s/groups/%s/teams" % (P2, gid))

    def _group_view(self, g, base):
        return {"clusterCount": 0, "created": g["created"], "id": g["id"],
                "links": [{"href": "%s%s/groups/%s" % (base, P2, g["id"]), "rel": "self"}],
                "name": g["name"], "orgId": g["orgId"], "withDefaultAlertsSettings": True}

    def op_getGroup(self, p, q, body, v):
        gid = check_id(p["groupId"], "groupId")
        with self.emu.lock:
            return 200, self._group_view(self.emu.state.group(gid), self._base())

    def op_listOrgTeams(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        base = self._base()
        with self.emu.lock:
            st = self.emu.state
            st.org(oid)
            items = [self._team_view(st.teams[t], base) for t in st.org_teams[oid]]
        return 200, self._paginate(items, q, base, "%s/orgs/%s/teams" % (P2, oid))

    def _team_view(self, t, base):
        return {"id": t["id"],
                "links": [{"href": "%s%s/orgs/%s/teams/%s" % (base, P2, t["orgId"], t["id"]),
                           "rel": "self"}],
                "name": t["name"]}

    def op_getOrgTeam(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        tid = check_id(p["teamId"], "teamId")
        with self.emu.lock:
            st = self.emu.state
            st.org(oid)
            return 200, self._team_view(st.team(oid, tid), self._base())

    def _user_list(self, st, uids, version, q):
        """The users (not yet rendered) a list answer covers, in membership order."""
        if version.date == V2023:
            statuses = ("ACTIVE",)
        else:
            statuses = q.statuses()
            username = q.get("username")
            if username is not None:
                uid = st.by_username.get(username.lower())
                uids = [uid] if uid is not None and uid in uids else []
        if not isinstance(uids, dict) or len(uids) < 1000:
            return [u for u in (st.users[i] for i in uids)
                    if u["status"] in statuses and not u["legacyProjectInvite"]]
        # a large membership (scale): the filtered list is cached until the state changes
        key = (id(uids), tuple(sorted(statuses)))
        hit = st.list_cache.get(key)
        if hit is not None and hit[0] == st.gen and hit[1] is uids:
            return hit[2]
        out = [u for u in (st.users[i] for i in uids)
               if u["status"] in statuses and not u["legacyProjectInvite"]]
        if len(st.list_cache) > 64:
            st.list_cache.clear()
        st.list_cache[key] = (st.gen, uids, out)
        return out

    def op_listOrgUsers(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        base = self._base()
        with self.emu.lock:
            st = self.emu.state
            st.org(oid)
            members = st.org_members[oid]
            if v.date == V2023:
                view = lambda u: app_user_view(st, u, base)
            else:
                view = lambda u: org_user_view(st, u, oid)
            items = self._user_list(st, members, v, q)
            return 200, self._paginate(items, q, base, "%s/orgs/%s/users" % (P2, oid), view)

    def op_getOrgUser(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        uid = check_id(p["userId"], "userId")
        with self.emu.lock:
            st = self.emu.state
            st.org(oid)
            u = st.user(uid, v.date)
            st.user_in_org(u, oid)
            if u["status"] not in q.statuses():
                raise ApiErr(404, "USER_NOT_FOUND", "No user with ID %s exists." % uid, [uid])
            return 200, org_user_view(st, u, oid)

    def op_listOrgTeamUsers(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        tid = check_id(p["teamId"], "teamId")
        base = self._base()
        with self.emu.lock:
            st = self.emu.state
            st.org(oid)
            t = st.team(oid, tid)
            members = t["members"]
            if v.date != V2023 and q.get("userId") is not None:
                fid = check_id(q.get("userId"), "userId")
                members = [fid] if fid in members else []
            if v.date == V2023:
                view = lambda u: app_user_view(st, u, base)
            else:
                view = lambda u: org_user_view(st, u, oid)
            items = self._user_list(st, members, v, q)
            return 200, self._paginate(items, q, base, "%s/orgs/%s/teams/%s/users" % (P2, oid, tid),
                                 view)

    def op_listGroupUsers(self, p, q, body, v):
        gid = check_id(p["groupId"], "groupId")
        base = self._base()
        with self.emu.lock:
            st = self.emu.state
            g = st.group(gid)
            oid = g["orgId"]
            members = st.project_members[gid]
            # implied access (roles shown: a GUESS from the spec's schema, see the docstring)
            implied = {}     # userId -> roles, for users without a direct role
            if q.flag("flattenTeams", False):
                for t in st.org_teams[oid]:
                    team = st.teams[t]
                    for uid in team["members"] if gid in team["projects"] else ():
                        if uid not in members:
                            rs = implied.setdefault(uid, [])
                            rs += [r for r in team["projects"][gid] if r not in rs]
            if q.flag("includeOrgUsers", False):
                for uid in st.org_members[oid]:
                    org_roles = st.users[uid]["orgs"][oid]
                    if uid in members or not {"ORG_OWNER", "ORG_READ_ONLY"} & set(org_roles):
                        continue
                    rs = implied.setdefault(uid, [])
                    r = "GROUP_OWNER" if "ORG_OWNER" in org_roles else "GROUP_READ_ONLY"
                    if r not in rs:
                        rs.append(r)
            if implied:
                members = list(members) + [u for u in st.org_members[oid] if u in implied]
            if v.date == V2023:
                view = lambda u: app_user_view(st, u, base)
            else:
                view = lambda u: group_user_view(st, u, gid, implied.get(u["id"]))
            items = self._user_list(st, members, v, q)
            return 200, self._paginate(items, q, base, "%s/groups/%s/users" % (P2, gid), view)

    def op_getGroupUser(self, p, q, body, v):
        gid = check_id(p["groupId"], "groupId")
        uid = check_id(p["userId"], "userId")
        with self.emu.lock:
            st = self.emu.state
            st.group(gid)
            u = st.user(uid, v.date)
            if gid not in u["projects"] or u["status"] not in q.statuses():
                raise ApiErr(404, "USER_NOT_FOUND",
                             "User %s (%s) is not a member of project %s." % (
                                 uid, u["username"], gid), [uid, gid])
            return 200, group_user_view(st, u, gid)

    # invitations (deprecated 2023-01-01 resources; JSON arrays, not paginated)

    def _org_invite_view(self, st, inv_id, u, oid, base):
        o = st.orgs[oid]
        gra = st.user_group_roles(u, oid)
        return {"createdAt": u["invitationCreatedAt"], "expiresAt": u["invitationExpiresAt"],
                "groupRoleAssignments": gra, "id": inv_id,
                "inviterUsername": u["inviterUsername"],
                "orgId": oid, "orgName": o["name"], "roles": list(u["orgs"].get(oid, [])),
                "teamIds": st.user_team_ids(u, oid), "username": u["username"]}

    def _group_invite_view(self, st, inv_id, u, gid, base):
        return {"createdAt": u["invitationCreatedAt"], "expiresAt": u["invitationExpiresAt"],
                "groupId": gid, "groupName": st.projects[gid]["name"], "id": inv_id,
                "inviterUsername": u["inviterUsername"],
                "roles": list(u["projects"].get(gid, [])), "username": u["username"]}

    @staticmethod
    def _by_username(invites, q):
        name = q.get("username")
        if name is None:
            return invites
        return [(i, u) for i, u in invites if u["username"].lower() == name.lower()]

    def op_listOrgInvites(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        base = self._base()
        with self.emu.lock:
            st = self.emu.state
            st.org(oid)
            return 200, [self._org_invite_view(st, i, u, oid, base)
                         for i, u in self._by_username(st.org_invitations(oid), q)]

    def op_getOrgInvite(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        inv = check_id(p["invitationId"], "invitationId")
        with self.emu.lock:
            st = self.emu.state
            st.org(oid)
            u = st.find_invitation(st.org_invitations(oid), inv, "organization " + oid)
            return 200, self._org_invite_view(st, inv, u, oid, self._base())

    def op_deleteOrgInvite(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        inv = check_id(p["invitationId"], "invitationId")
        with self.emu.lock:
            self.emu.state.delete_org_invitation(oid, inv)
        return 204, None

    def op_listGroupInvites(self, p, q, body, v):
        gid = check_id(p["groupId"], "groupId")
        base = self._base()
        with self.emu.lock:
            st = self.emu.state
            st.group(gid)
            return 200, [self._group_invite_view(st, i, u, gid, base)
                         for i, u in self._by_username(st.group_invitations(gid), q)]

    def op_getGroupInvite(self, p, q, body, v):
        gid = check_id(p["groupId"], "groupId")
        inv = check_id(p["invitationId"], "invitationId")
        with self.emu.lock:
            st = self.emu.state
            st.group(gid)
            u = st.find_invitation(st.group_invitations(gid), inv, "project " + gid)
            return 200, self._group_invite_view(st, inv, u, gid, self._base())

    def op_deleteGroupInvite(self, p, q, body, v):
        gid = check_id(p["groupId"], "groupId")
        inv = check_id(p["invitationId"], "invitationId")
        with self.emu.lock:
            self.emu.state.delete_group_invitation(gid, inv)
        return 204, None

    def op_removeGroupUser(self, p, q, body, v):
        gid = check_id(p["groupId"], "groupId")
        uid = check_id(p["userId"], "userId")
        with self.emu.lock:
            self.emu.state.remove_group_user(gid, uid, v.date)
        return 204, None

    def op_removeOrgUser(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        uid = check_id(p["userId"], "userId")
        with self.emu.lock:
            self.emu.state.remove_org_user(oid, uid, v.date)
        return 204, None

    def op_removeOrgTeamUserFromTeam(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        tid = check_id(p["teamId"], "teamId")
        uid = check_id(p["userId"], "userId")
        with self.emu.lock:
            self.emu.state.remove_team_user(oid, tid, uid, v.date)
        return 204, None

    def op_removeOrgTeamUser(self, p, q, body, v):
        oid = check_id(p["orgId"], "orgId")
        tid = check_id(p["teamId"], "teamId")
        ct = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if not (ct == "application/json" or
                re.fullmatch(r"application/vnd\.atlas\.\d{4}-\d{2}-\d{2}\+json", ct)):
            raise ApiErr(415, "UNSUPPORTED_MEDIA_TYPE",
                         "Unsupported content type %s; use application/vnd.atlas.%s+json." %
                         (ct or "(none)", v.date), [ct])
        try:
            doc = json.loads(body.decode("utf-8")) if body else None
        except (ValueError, UnicodeDecodeError):
            raise ApiErr(400, "INVALID_JSON", "Received JSON is malformed.")
        if not isinstance(doc, dict) or doc.get("id") is None:
            raise ApiErr(400, "VALIDATION_ERROR", "The request body is invalid: id is required.",
                         ["id"], bad=[{"field": "id", "description": "must not be null"}])
        uid = doc["id"]
        if not isinstance(uid, str):
            raise ApiErr(400, "VALIDATION_ERROR", "The request body is invalid: id must be a string.",
                         ["id"], bad=[{"field": "id", "description": "must be a string"}])
        check_id(uid, "id")
        with self.emu.lock:
            st = self.emu.state
            u = st.remove_team_user(oid, tid, uid, v.date)
            return 200, org_user_view(st, u, oid)

    def op_v1RemoveGroupUser(self, p, q, body, v):
        gid = check_id(p["GROUP_ID"], "GROUP_ID")
        uid = check_id(p["USER_ID"], "USER_ID")
        with self.emu.lock:
            self.emu.state.remove_group_user(gid, uid, V2023)
        return 204, None

    def op_v1ListGroupUsers(self, p, q, body, v):
        gid = check_id(p["GROUP_ID"], "GROUP_ID")
        base = self._base()
        with self.emu.lock:
            st = self.emu.state
            st.group(gid)
            items = [st.users[u] for u in st.project_members[gid]
                     if st.users[u]["status"] == "ACTIVE" and
                     not st.users[u]["legacyProjectInvite"]]
            return 200, self._paginate(items, q, base, "%s/groups/%s/users" % (P1, gid),
                                 lambda u: app_user_view(st, u, base))

    def op_v1UserByName(self, p, q, body, v):
        name = unquote(p["USERNAME"])
        with self.emu.lock:
            st = self.emu.state
            uid = st.by_username.get(name.lower())
            u = st.users.get(uid) if uid else None
            if u is None or u["status"] != "ACTIVE" or u["legacyProjectInvite"]:
                raise ApiErr(404, "USER_NOT_FOUND", "No user with username %s exists." % name,
                             [name])
            return 200, app_user_view(st, u, self._base())

    # -- OAuth

    def _oauth_error(self, status, error, description, extra_headers=(), counters=None):
        headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                   ("Pragma", "no-cache")] + list(extra_headers)
        return Resp(status, encode_json({"error": error,
                                         "error_description": self._reflect(description)}),
                    headers, counters)

    def _oauth(self, route, allowed, method, path, body):
        emu = self.emu
        if route is None:
            if allowed:
                return self._finish_error(ApiErr(405, "METHOD_NOT_ALLOWED",
                                                 "Method %s is not allowed for resource %s." %
                                                 (method, path), [method, path],
                                                 headers=[("Allow", "POST")]), None, False, False)
            return self._finish_error(ApiErr(404, "RESOURCE_NOT_FOUND",
                                             "Cannot find resource %s." % path, [path]),
                                      None, False, False)
        creds = parse_basic(self.headers.get("Authorization"))
        if route.op == "token":
            # 50 a minute for each combination of client IP address and client id
            key = (self.client_address[0], creds[0] if creds else None)
            limit = emu.cfg["token_rate_limit"]
            window = emu.cfg["token_rate_window_s"]
            if limit > 0:
                now = time.monotonic()
                with emu.lock:
                    dq = emu.rate.get(key)
                    if dq is None:
                        dq = emu.rate[key] = collections.deque()
                    while dq and dq[0] <= now - window:
                        dq.popleft()
                    if len(dq) >= limit:
                        retry = max(1, int(dq[0] + window - now + 0.999))
                        minutes = max(1, int(round(window / 60.0)))
                        err = ApiErr(429, "RATE_LIMITED",
                                     "Resource /api/oauth/token is limited to %d requests every "
                                     "%d minutes." % (limit, minutes),
                                     ["/api/oauth/token", limit, minutes])
                        return Resp(429, encode_json(self._error_body(err)),
                                    [("Content-Type", "application/json"),
                                     ("Retry-After", str(retry))], ["token_rate_limited"])
                    dq.append(now)
        client = client_ok(emu.state.service_accounts, creds)
        if client is None:
            return self._oauth_error(401, "invalid_client", "Invalid client credentials.",
                                     [("WWW-Authenticate", 'Basic realm="MongoDB Cloud"')])
        ct = (self.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
        if ct != "application/x-www-form-urlencoded":
            return self._oauth_error(400, "invalid_request",
                                     "Content-Type must be application/x-www-form-urlencoded.")
        try:
            form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True))
        except (UnicodeDecodeError, ValueError):
            return self._oauth_error(400, "invalid_request", "Malformed request body.")
        if route.op == "token":
            gt = form.get("grant_type")
            if gt is None:
                return self._oauth_error(400, "invalid_request", "Missing grant_type.")
            if gt != "client_credentials":
                return self._oauth_error(400, "unsupported_grant_type",
                                         "Unsupported grant_type %s." % gt)
            tok, ttl = emu.issue_token(client)
            if tok is not None:
                self.token_used = emu.tokens[tok][2]
            if tok is None:
                return self._oauth_error(
                    403, "access_denied", "Access Token limit reached. Please use the "
                    "existing Access Tokens or create a new Service Account.",
                    counters=["token_cap_denied"])
            return Resp(200, encode_json({"access_token": tok, "expires_in": ttl,
                                          "token_type": "Bearer"}),
                        [("Content-Type", "application/json"), ("Cache-Control", "no-store"),
                         ("Pragma", "no-cache")], ["token_grants"])
        # revoke
        tok = form.get("token")
        if not tok:
            return self._oauth_error(400, "invalid_request", "Missing token.")
        with emu.lock:
            t = emu.tokens.get(tok)
            if t is not None and t[0] == client:
                del emu.tokens[tok]
                emu.active.get(client, {}).pop(tok, None)
        return Resp(200, b"", [("Cache-Control", "no-store")], ["revocations"])

    # -- faults

    def _run_fault(self, rule, real, envelope, pretty):
        """Answer (or not) as the rule says; accounts the request before any I/O."""
        kind = rule["kind"]
        emu = self.emu
        if kind in ("reset_mid_body", "slow_body"):
            resp = real()
        else:
            resp = real() if rule.get("process") else None
        counted = resp if (resp is not None and resp.counters) else None

        if kind == "status":
            st = rule["status"]
            code = rule.get("error_code") or DEFAULT_ERROR_CODES.get(st, "UNEXPECTED_ERROR")
            ra = rule.get("retry_after")
            detail = rule.get("detail")
            if detail is None:
                resource = "/".join(self.path.split("?")[0].strip("/").split("/")[:4])
                if st == 429 and code == "RATE_LIMITED_TOKEN_BUCKET":
                    wait = ra if ra is not None else 55
                    detail = ("Rate limit exceeded for %s. Please retry after %s seconds. Request "
                              "capacity: 10. Refill rate: 5 per 60 seconds." % (resource, wait))
                    rule.setdefault("parameters", [resource, wait, 10, 5, 60])
                elif st == 429:
                    detail = ("Rate limit exceeded for %s. Please retry after %s seconds." %
                              (resource, ra if ra is not None else 60))
                elif st == 403 and code == "IP_ADDRESS_NOT_ON_ACCESS_LIST":
                    detail = ("IP address %s is not allowed to access this resource." %
                              self.client_address[0])
                else:
                    detail = "Simulated error (emulator fault rule)."
            err = ApiErr(st, code, detail, rule.get("parameters", []))
            if ra is not None:
                err.headers.append(("Retry-After", str(ra)))
            for k, v in (rule.get("headers") or {}).items():
                err.headers.append((k, str(v)))
            err.headers.extend(self.rl_headers)
            out = self._finish_error(err, None, envelope, pretty)
            self._account(str(st), counted)
            self._write(out)
            return
        if kind == "reset":
            self._account("reset", counted)
            self._abort()
            return
        if kind == "reset_mid_body":
            self._account(str(resp.status), resp)
            head = self._head_bytes(resp.status, resp.headers, len(resp.body))
            if resp.body:
                self.wfile.write(head + resp.body[:max(1, len(resp.body) // 2)])
            else:
                self.wfile.write(head[:max(1, len(head) // 2)])
            self._abort()
            return
        if kind == "hang":
            self._account("hang", counted)
            self._hang(float(rule.get("seconds", 600)))
            self.close_connection = True
            return
        if kind == "slow_body":
            self._account(str(resp.status), resp)
            self.wfile.write(self._head_bytes(resp.status, resp.headers, len(resp.body)))
            interval = float(rule.get("interval_ms", 50)) / 1000.0
            for i in range(len(resp.body)):
                if emu.stop.wait(interval):
                    break
                self.wfile.write(resp.body[i:i + 1])
            return
        st = int(rule.get("status", {"malformed_json": 500, "html": 502, "empty": 500,
                                     "invalid_utf8": 400, "oversized": 500}[kind]))
        reason = REASONS.get(st, "Unknown")
        code = rule.get("error_code") or DEFAULT_ERROR_CODES.get(st, "UNEXPECTED_ERROR")
        self._account(str(st), counted)
        if kind == "malformed_json":
            full = encode_json({"detail": "Unexpected error.", "error": st, "errorCode": code,
                                "parameters": [], "reason": reason})
            self._write(Resp(st, full[:len(full) * 2 // 3], [("Content-Type", "application/json")]))
        elif kind == "html":
            page = ("<!DOCTYPE html>\n<html><head><title>%d %s</title></head>\n<body>\n"
                    "<center><h1>%d %s</h1></center>\n<hr><center>nginx</center>\n"
                    "</body></html>\n" % (st, reason, st, reason)).encode()
            self._write(Resp(st, page, [("Content-Type", "text/html; charset=utf-8")]))
        elif kind == "empty":
            self._write(Resp(st, b"", [("Content-Type", "application/json")]))
        elif kind == "invalid_utf8":
            body = (b'{"detail":"Invalid byte sequence \xff\xfe in \xc3\x28 request \xed\xa0\x80.",'
                    b'"error":' + str(st).encode() + b',"errorCode":"' + code.encode() +
                    b'","parameters":[],"reason":"' + reason.encode() + b'"}')
            hdrs = [("Content-Type", "application/json")]
            if st in (400, 404, 409):
                hdrs.append(("X-Error-Code", code))
            self._write(Resp(st, body, hdrs))
        elif kind == "oversized":
            size = int(rule.get("size", 10 * 1024 * 1024))
            prefix = ('{"error":%d,"errorCode":"%s","reason":"%s","detail":"' %
                      (st, code, reason)).encode()
            suffix = b'"}'
            fill = max(0, size - len(prefix) - len(suffix))
            total = len(prefix) + fill + len(suffix)
            self.wfile.write(self._head_bytes(st, [("Content-Type", "application/json")], total)
                             + prefix)
            chunk = b"x" * 65536
            left = fill
            while left > 0:
                n = min(left, len(chunk))
                self.wfile.write(chunk[:n])
                left -= n
            self.wfile.write(suffix)

    def _hang(self, seconds):
        conn = self.connection
        deadline = time.monotonic() + seconds
        try:
            conn.settimeout(0.2)
            while not self.emu.stop.is_set() and time.monotonic() < deadline:
                try:
                    data = conn.recv(4096)
                except (socket.timeout, ssl.SSLWantReadError):
                    continue
                if not data:
                    break
        except OSError:
            pass

    # -- control interface

    def _control(self, method, target, body):
        emu = self.emu
        path, _, query = target.partition("?")
        name = path[len("/__emulator/"):].strip("/")
        q = Query(query)

        def ok(obj, status=200):
            self._write(Resp(status, encode_json(obj, True) + b"\n",
                             [("Content-Type", "application/json")]))

        def doc():
            if not body:
                return {}
            return json.loads(body.decode("utf-8"))

        try:
            if name == "health" and method == "GET":
                return ok({"ok": True, "pid": os.getpid()})
            if name == "counters" and method == "GET":
                return ok(emu.counters())
            if name == "reset" and method == "POST":
                emu.reset()
                return ok({"ok": True})
            if name == "reset_counters" and method == "POST":
                emu.reset(counters_only=True)
                return ok({"ok": True})
            if name == "config":
                if method == "GET":
                    with emu.lock:
                        return ok(copy.deepcopy(emu.cfg))
                if method == "POST":
                    return ok(emu.set_config(doc()))
            if name == "federation" and method == "POST":
                d = doc()
                with emu.lock:
                    o = emu.state.org(d["orgId"])
                    o["federated"] = bool(d.get("federated", o["federated"]))
                    if "roleMappings" in d:
                        if not isinstance(d["roleMappings"], list):
                            raise ValueError("roleMappings must be a list")
                        o["roleMappings"] = d["roleMappings"]
                    if "federationSettings" in d:
                        o["federationSettings"] = d["federationSettings"]
                    return ok({"ok": True})
            if name == "faults":
                if method == "GET":
                    with emu.lock:
                        return ok({"faults": [dict(r) for r in emu.faults]})
                if method == "POST":
                    d = doc()
                    rules = d.get("faults") if isinstance(d, dict) and "faults" in d else d
                    if isinstance(rules, dict):
                        rules = [rules]
                    if not isinstance(rules, list):
                        raise ValueError("expected {\"faults\": [...]}")
                    n = emu.add_faults(rules)
                    return ok({"ok": True, "rules": n})
                if method == "DELETE":
                    with emu.lock:
                        emu.faults = []
                    return ok({"ok": True})
            if name == "state" and method == "GET":
                with emu.lock:
                    st = emu.state
                    who = q.get("user")
                    if who is not None:
                        uid = who if who in st.users else st.by_username.get(who.lower())
                        if uid is None:
                            return ok({"error": "no such user %s" % who}, 404)
                        u = {k: v for k, v in st.users[uid].items() if v is not None}
                        u["orgs"] = {k: list(v) for k, v in u["orgs"].items()}
                        u["projects"] = {k: list(v) for k, v in u["projects"].items()}
                        u["teamIds"] = st.user_team_ids(st.users[uid])
                        return ok(u)
                    return ok(st.dump())
            if name == "seed" and method == "POST":
                d = doc()
                with emu.lock:
                    emu.state = State(d, previous=emu.state)
                return ok({"ok": True, "users": len(emu.state.users)})
            if name == "rate_limits":
                if method == "GET":
                    return ok(emu.rate_limits_view())
                if method == "DELETE":
                    with emu.lock:
                        emu.buckets = {}
                    return ok({"ok": True})
            if name == "scale" and method == "POST":
                with emu.lock:
                    return ok(emu.state.scale(doc()))
            if name == "users" and method == "POST":
                with emu.lock:
                    ids = emu.state.bulk_create(doc())
                return ok({"ids": ids})
            if name == "requests" and method == "GET":
                n = int(q.get("limit", "50"))
                with emu.lock:
                    items = list(emu.log)[-n:] if n > 0 else []
                return ok({"requests": items})
            if name == "service_accounts" and method == "POST":
                # a new secret for a service account (rotation); its tokens stay valid
                d = doc()
                with emu.lock:
                    acct = emu.state.service_accounts[d["client_id"]]
                    acct["secret"] = str(d["client_secret"])
                return ok({"ok": True})
            if name == "expire_tokens" and method == "POST":
                with emu.lock:
                    for t in emu.tokens.values():
                        t[1] = 0.0
                return ok({"ok": True})
            return ok({"error": "unknown control call %s %s" % (method, path)}, 404)
        except (SeedError, ValueError, TypeError, KeyError, OSError) as e:
            return ok({"error": "%s: %s" % (type(e).__name__, e)}, 400)


_TOKEN_FIELD_RE = re.compile(rb"(^|&)(token|client_secret|access_token|refresh_token)=[^&]*")


def _mask_body(body):
    b = _TOKEN_FIELD_RE.sub(rb"\1\2=***", body[:4096])
    return b.decode("utf-8", "replace")


class EmuServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, addr, emu, listener, ssl_context=None):
        self.emu = emu
        self.listener = listener
        self.ssl_context = ssl_context
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, Handler)

    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = host
        self.server_port = port

    def process_request(self, request, client_address):
        with self.emu.lock:
            self.emu.c["connections_accepted"] += 1
        super().process_request(request, client_address)

    def handle_error(self, request, client_address):
        if self.emu.verbose:
            sys.stderr.write("connection %s: " % (client_address,))
            traceback.print_exc(file=sys.stderr)


def write_port_file(path, data):
    d = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(d, ".%s.%d.tmp" % (os.path.basename(path), os.getpid()))
    with open(tmp, "w") as f:
        json.dump(data, f)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def main(argv=None):
    ap = argparse.ArgumentParser(description="MongoDB Atlas Admin API emulator (test fixture)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--http-port", type=int, default=0)
    ap.add_argument("--https-port", type=int, default=None)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--seed", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                   "seed.json"))
    ap.add_argument("--port-file")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--nonce-ttl-s", type=float, default=300.0)
    ap.add_argument("--token-ttl-s", type=float, default=3600.0)
    ap.add_argument("--token-rate-limit", type=int, default=50)
    ap.add_argument("--token-rate-window-s", type=float, default=60.0)
    ap.add_argument("--token-cap", type=int, default=100)
    ap.add_argument("--config", default=None,
                    help="JSON: command-line defaults of any /__emulator/config key")
    ap.add_argument("--today", default=None)
    ap.add_argument("--idle-timeout-s", type=float, default=300.0)
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.today is not None:
        datetime.date.fromisoformat(args.today)
    if (args.cert is None) != (args.key is None):
        ap.error("--cert and --key go together")
    if args.cert and args.https_port is None:
        args.https_port = 0

    try:
        emu = Emulator(args)
    except (OSError, ValueError) as e:
        sys.stderr.write("atlas_emulator: cannot start (seed %s, --config): %s\n" % (args.seed, e))
        return 2

    servers = [EmuServer((args.host, args.http_port), emu, "http")]
    https_port = None
    if args.cert and args.https_port is not None:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(args.cert, args.key)
        try:
            ctx.set_alpn_protocols(["http/1.1"])
        except NotImplementedError:
            pass
        tls_server = EmuServer((args.host, args.https_port), emu, "https", ctx)
        servers.append(tls_server)
        https_port = tls_server.server_address[1]
    threads = []
    for s in servers:
        t = threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.1},
                             name="serve-" + s.listener, daemon=True)
        t.start()
        threads.append(t)

    def on_signal(signum, frame):
        emu.stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    info = {"http_port": servers[0].server_address[1], "https_port": https_port,
            "pid": os.getpid()}
    if args.port_file:
        write_port_file(args.port_file, info)
    if args.verbose:
        sys.stderr.write("atlas_emulator listening: %s\n" % json.dumps(info))
    while not emu.stop.wait(1.0):
        pass
    for s in servers:
        s.shutdown()
        s.server_close()
    if args.port_file:
        try:
            with open(args.port_file) as f:
                if json.load(f).get("pid") == os.getpid():
                    os.unlink(args.port_file)
        except (OSError, ValueError):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
