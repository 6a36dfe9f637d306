"""The emulator's HTTP face: IMS tokens, the Flow Service routes, DLZ credentials, control routes."""

from __future__ import annotations

import base64
import binascii
import math
import secrets
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl

import jsonpatch
import jsonpointer
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from auditor.emulator.state import FAULTS, KINDS, Fault, World, new_etag
from auditor.errors import ScheduleError
from auditor.flows import DATASET_FLOW_SPECS, DESTINATIONS
from auditor.flows.setup import AUTH_PARAMS, AUTH_SPECS, AUTH_TYPES, ENCRYPTING, ENCRYPTION_ALGORITHM, ENCRYPTION_SPEC, LOCATION_KEYS, SFTP_SSH_KEY_SPEC
from auditor.schedule import parse_time

FLOWSERVICE = "/data/foundation/flowservice"
PAGE = 100


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"errorMessage": message, "errorDetails": message}, status_code=status)


def _not_found(kind: str, entity_id: str) -> JSONResponse:
    return _error(404, f"{kind} not found with id = [{entity_id}]")


CONTROL = "/emulator/"
MAX_ADVANCE = timedelta(days=366)  # one clock move runs every slot up to it: bounded, so one request cannot run for hours


def control_auth(client_id: str, client_secret: str) -> tuple[str, str]:
    """What a caller of the control routes sends: HTTP Basic with the emulator's client id and secret
    (`httpx.post(..., auth=control_auth(id, secret))`). A bearer token from the emulator's own IMS works too."""
    return (client_id, client_secret)


def _control_allowed(world: World, header: str) -> bool:
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic":
        try:
            user, _, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return secrets.compare_digest(user.encode(), world.client_id.encode()) and secrets.compare_digest(password.encode(), world.client_secret.encode())
    if scheme.lower() == "bearer":
        with world.lock:
            expiry = world.tokens.get(value.strip())
        return expiry is not None and expiry > datetime.now(UTC)
    return False


async def _object_body(request: Request) -> dict[str, Any] | JSONResponse:
    """The JSON object a control route expects, or the 400 that says why not."""
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        return _error(400, "the body is not JSON")
    if not isinstance(body, dict):
        return _error(400, "the body must be a JSON object")
    return body


def _whole(value: Any, name: str, low: int, high: int) -> int | JSONResponse:
    if type(value) is not int or not low <= value <= high:
        return _error(400, f"{name} must be a whole number from {low} to {high}")
    return value


def _matches(entity: dict[str, Any], condition: str) -> bool:
    """One `property` filter: `a.b==x,y`, `a[].b==x`, `createdAt>=123`."""
    for op in ("==", ">=", "<=", "!=", ">", "<"):
        if op in condition:
            path, _, wanted = condition.partition(op)
            break
    else:
        return True
    values = _values(entity, path.strip().split("."))
    options = [w.strip() for w in wanted.split(",")]
    if op == "==":  # lenient, like the reference advises for statuses: case-insensitive
        return any(str(v).lower() in [o.lower() for o in options] for v in values)
    if op == "!=":
        return all(str(v).lower() not in [o.lower() for o in options] for v in values)
    numbers = [v for v in values if isinstance(v, int | float)]
    try:
        limit = float(options[0])
    except ValueError:
        return False  # a comparison with something that is not a number matches nothing
    return any({">=": v >= limit, "<=": v <= limit, ">": v > limit, "<": v < limit}[op] for v in numbers)


def _values(value: Any, path: list[str]) -> list[Any]:
    if not path:
        return [value]
    head, rest = path[0], path[1:]
    many = head.endswith("[]")
    key = head.removesuffix("[]")
    inner = value.get(key) if isinstance(value, dict) else None
    if many and isinstance(inner, list):
        return [v for item in inner for v in _values(item, rest)]
    return _values(inner, rest) if inner is not None else []


def create_app(world: World) -> FastAPI:
    app = FastAPI(title="Flow Service API emulator (destinations)", version="1.0")

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if path.startswith(CONTROL) and not _control_allowed(world, request.headers.get("authorization", "")):
            return JSONResponse(
                {"message": "the emulator's control routes need its credentials: HTTP Basic with its client id and secret, or a bearer token from its IMS"},
                status_code=401,
                headers={"WWW-Authenticate": 'Basic realm="emulator"'},
            )
        if path.startswith((FLOWSERVICE, "/data/foundation/connectors", "/data/core/activation")):
            with world.lock:
                if world.throttle:
                    status, retry_after = world.throttle.pop(0)
                    headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None else {}
                    return JSONResponse({"message": "Too many requests" if status == 429 else "Service unavailable"}, status_code=status, headers=headers)
                token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
                expiry = world.tokens.get(token)
                if expiry is None or expiry <= datetime.now(UTC):
                    return JSONResponse({"error_code": "401013", "message": "Oauth token is not valid"}, status_code=401)
            if request.headers.get("x-api-key") != world.client_id or not request.headers.get("x-gw-ims-org-id"):
                return JSONResponse({"message": "x-api-key and x-gw-ims-org-id are required"}, status_code=403)
        response: Response = await call_next(request)
        return response

    @app.post("/ims/token/v3")
    async def token(request: Request) -> JSONResponse:
        form = dict(parse_qsl((await request.body()).decode("utf-8", "replace"))) or dict(request.query_params)
        if form.get("grant_type") != "client_credentials" or not form.get("scope"):
            return JSONResponse({"error": "invalid_request", "error_description": "grant_type client_credentials and scope are required"}, status_code=400)
        if form.get("client_id") != world.client_id or not secrets.compare_digest(str(form.get("client_secret", "")), world.client_secret):
            return JSONResponse({"error": "invalid_client", "error_description": "invalid client credentials"}, status_code=401)
        value = secrets.token_urlsafe(32)
        with world.lock:
            world.tokens[value] = datetime.now(UTC) + timedelta(seconds=86399)
        return JSONResponse({"access_token": value, "token_type": "bearer", "expires_in": 86399})

    @app.get(f"{FLOWSERVICE}/connectionSpecs/{{spec_id}}")
    def connection_spec(spec_id: str) -> JSONResponse:
        if spec_id not in DESTINATIONS:
            return _not_found("connectionSpecs", spec_id)
        name, flow_spec, _ = DESTINATIONS[spec_id]
        auth_names = [] if name == "Data Landing Zone" else [AUTH_SPECS[name]] + ([SFTP_SSH_KEY_SPEC] if name == "SFTP" else [])
        auth = [
            {"name": n, "type": AUTH_TYPES[n], "spec": {"type": "object", "required": list(AUTH_PARAMS[n]), "properties": {k: {"type": "string"} for k in AUTH_PARAMS[n]}}}
            for n in auth_names
        ]
        properties: dict[str, Any] = {"datasetFileType": {"enum": ["JSON", "PARQUET"]}, "compression": {"enum": ["NONE", "GZIP"]}}
        properties |= {k: {"type": "string"} for k in LOCATION_KEYS[name]}
        target = {"name": "Target", "type": "FileBased", "spec": {"type": "object", "required": [*LOCATION_KEYS[name], "datasetFileType", "compression"], "properties": properties}}
        encryption = [] if name not in ENCRYPTING else [
            {"name": ENCRYPTION_SPEC, "type": "FileAsymmetric", "spec": {"type": "object", "required": ["encryptionAlgo", "publicKey"],
                                                                       "properties": {"encryptionAlgo": {"type": "string", "enum": [ENCRYPTION_ALGORITHM]}, "publicKey": {"type": "string"}}}}
        ]
        return JSONResponse({"items": [{"id": spec_id, "name": name, "providerId": "14e34fac-d307-11e9-bb65-2a2ae2dbcce4", "version": "1.0", "authSpec": auth, "targetSpec": target, "encryptionSpecs": encryption, "flowSpecIds": [flow_spec]}]})

    @app.get(f"{FLOWSERVICE}/flowSpecs/{{spec_id}}")
    def flow_spec(spec_id: str) -> JSONResponse:
        if spec_id not in DATASET_FLOW_SPECS:
            return _not_found("flowSpecs", spec_id)
        return JSONResponse({"items": [{"id": spec_id, "name": f"{DESTINATIONS[DATASET_FLOW_SPECS[spec_id]][0]} dataset export", "version": "1.0", "sourceConnectionSpecIds": ["23598e46-f560-407b-88d5-ea6207e49db0"], "targetConnectionSpecIds": [DATASET_FLOW_SPECS[spec_id]]}]})

    @app.get(f"{FLOWSERVICE}/connectionSpecs/{{spec_id}}/configs")
    def datasets(spec_id: str, start: int = 0, limit: int = 20) -> JSONResponse:
        if spec_id != "23598e46-f560-407b-88d5-ea6207e49db0":
            return _error(400, "configs are served for the Data Lake source connection spec only")
        if limit < 1 or limit > 100 or start < 0:
            return _error(400, "limit must be 1 to 100 and start at least 0")
        items = world.datasets[start : start + limit]
        end = start + len(items)
        return JSONResponse({"items": items, "pageInfo": {"start": start, "end": end, "total": len(world.datasets), "hasNext": end < len(world.datasets)}})

    def listing(kind: str, request: Request, items: list[dict[str, Any]]) -> JSONResponse:
        conditions = [c for p in request.query_params.getlist("property") for c in p.split("&") if c.strip()]
        chosen = [i for i in items if all(_matches(i, c) for c in conditions)]
        chosen.sort(key=lambda i: (i.get("updatedAt", 0), i.get("createdAt", 0)), reverse=True)
        try:
            limit = max(1, min(int(request.query_params.get("limit", PAGE)), PAGE))
            start = max(0, int(request.query_params.get("continuationToken", "0") or 0))
        except ValueError:
            return _error(400, "limit and continuationToken must be whole numbers")
        page = chosen[start : start + limit]
        body: dict[str, Any] = {"items": page, "_links": {}}
        if start + limit < len(chosen):
            query = "&".join(f"property={p}" for p in request.query_params.getlist("property"))
            body["_links"]["next"] = {"href": f"/{kind}?{query + '&' if query else ''}continuationToken={start + limit}"}
        if request.query_params.get("count") == "true":
            body["count"] = len(chosen)
        return JSONResponse(body)

    for kind in KINDS:
        register(app, world, kind, listing)

    @app.get(f"{FLOWSERVICE}/runs")
    def runs(request: Request) -> JSONResponse:
        with world.lock:
            return listing("runs", request, list(world.runs.values()))

    @app.get(f"{FLOWSERVICE}/runs/{{run_id}}")
    def run(run_id: str) -> JSONResponse:
        with world.lock:
            found = world.runs.get(run_id)
        return JSONResponse({"items": [found]}) if found else _not_found("runs", run_id)

    @app.patch(f"{FLOWSERVICE}/flows/{{flow_id}}")
    async def patch_flow(flow_id: str, request: Request) -> JSONResponse:
        try:
            operations = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the body is not JSON")
        with world.lock:
            flow = world.entities["flows"].get(flow_id)
            if flow is None:
                return _not_found("flows", flow_id)
            supplied = request.headers.get("if-match")
            if supplied != flow["etag"]:
                message = f'Supplied version=[{supplied}] does not match the current version on entity=[{flow["etag"]}]'
                return _error(412, message)
            if not isinstance(operations, list):
                return _error(400, "the body must be a JSON Patch array")
            if not all(isinstance(op, dict) for op in operations):
                return _error(400, "every patch operation must be an object")
            try:  # RFC 6902, nested paths and all; applied only when the whole patch applies
                updated = jsonpatch.apply_patch(flow, [{**op, "op": str(op.get("op", "")).lower()} for op in operations])  # "Replace" taken as "replace"
            except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, ValueError, KeyError, IndexError) as e:
                return _error(400, f"the JSON Patch cannot be applied: {e}")
            if not isinstance(updated, dict) or any(updated.get(k) != flow.get(k) for k in ("id", "etag", "version")):
                return _error(400, "the JSON Patch may not replace the flow or change its id or version")
            problem = world.validate_flow({k: updated.get(k) for k in ("flowSpec", "sourceConnectionIds", "targetConnectionIds", "scheduleParams")})
            if problem:
                return _error(400, problem)
            flow.clear()
            flow.update(updated)
            flow["etag"] = flow["version"] = new_etag()
            flow["updatedAt"] = int(world.now.timestamp() * 1000)
            flow["lastOperation"] = {"operation": "update", "ops": operations, "status": {"value": "completed", "errors": []}}
            flow["inheritedAttributes"] = world.inherited(flow)
            return JSONResponse({"id": flow_id, "etag": flow["etag"]})

    @app.post(f"{FLOWSERVICE}/flows/{{flow_id}}/action")
    def action(flow_id: str, op: str) -> JSONResponse:
        with world.lock:
            flow = world.entities["flows"].get(flow_id)
            if flow is None:
                return _not_found("flows", flow_id)
            if op.lower() not in ("enable", "disable"):
                return _error(400, f"op {op!r} is not enable or disable")
            flow["state"] = "enabled" if op.lower() == "enable" else "disabled"
            flow["etag"] = flow["version"] = new_etag()
            return JSONResponse({"id": flow_id, "etag": flow["etag"]})

    @app.get("/data/foundation/connectors/landingzone/credentials")
    def dlz_credentials(type: str = "dlz_destination") -> JSONResponse:
        sas_url = world.dlz_sas_url
        if type != "dlz_destination" or not sas_url:
            return _error(404, "no landing zone of that type")
        base, _, token = str(sas_url).partition("?")
        container = base.rstrip("/").rsplit("/", 1)[-1]
        return JSONResponse({"containerName": container, "SASToken": token, "storageAccountName": "emulator", "SASUri": sas_url})

    @app.post("/data/core/activation/disflowprovider/adhocrun")
    async def adhoc(request: Request) -> JSONResponse:
        """The undocumented ad-hoc dataset export (reference §8.5): one run per flow now."""
        body = await _object_body(request)
        if isinstance(body, JSONResponse):
            return body
        info = body.get("activationInfo")
        destinations = info.get("destinations") if isinstance(info, dict) else None
        if not isinstance(destinations, list) or not all(isinstance(d, dict) for d in destinations):
            return _error(400, "activationInfo.destinations must be a list of objects")
        answer = []
        with world.lock:
            for destination in destinations:
                if not isinstance(destination.get("datasets") or [], list) or not all(isinstance(d, dict) for d in destination.get("datasets") or []):
                    return _error(400, "datasets must be a list of objects")
                flow = world.entities["flows"].get(str(destination.get("flowId")))
                if flow is None:
                    return _not_found("flows", str(destination.get("flowId")))
                runs = world.run_now(flow)
                answer.append({"flowId": flow["id"], "datasets": [{"id": d.get("id"), "statusURL": f"{request.base_url}data/foundation/flowservice/runs/{r['id']}"} for d in destination.get("datasets") or [] for r in runs]})
        return JSONResponse({"destinations": answer})

    # -- control routes (not Adobe's API) --------------------------------------

    @app.post("/emulator/clock")
    async def clock(request: Request) -> JSONResponse:
        body = await _object_body(request)
        if isinstance(body, JSONResponse):
            return body
        if "now" not in body:
            return _error(400, "now: required (ISO-8601 or epoch seconds)")
        try:
            to = parse_time(body["now"], key="now")
        except ScheduleError as e:
            return _error(400, str(e))
        with world.lock:
            if to - world.now > MAX_ADVANCE:
                return _error(400, f"now: the clock moves at most {MAX_ADVANCE.days} days at a time (it is {world.now.isoformat()})")
            try:
                created = world.advance(to)
            except (ScheduleError, LookupError, TypeError, ValueError, AttributeError) as e:  # entities stored through the API that cannot run
                return _error(409, f"a flow cannot run: {type(e).__name__}: {e}")
        return JSONResponse({"now": to.isoformat(), "runs": [r["id"] for r in created]})

    @app.post("/emulator/faults")
    async def fault(request: Request) -> JSONResponse:
        body = await _object_body(request)
        if isinstance(body, JSONResponse):
            return body
        if body.get("kind") not in FAULTS:
            return _error(400, f"kind must be one of {', '.join(FAULTS)}")
        if not isinstance(body.get("flowId", ""), str):
            return _error(400, "flowId must be a string")
        try:
            slot = parse_time(body["slot"], key="slot") if body.get("slot") is not None else None
        except ScheduleError as e:
            return _error(400, str(e))
        with world.lock:
            world.faults.append(Fault(body["kind"], str(body.get("flowId", "")), slot))
        return JSONResponse({"faults": len(world.faults)})

    @app.post("/emulator/throttle")
    async def throttle(request: Request) -> JSONResponse:
        body = await _object_body(request)
        if isinstance(body, JSONResponse):
            return body
        status = _whole(body.get("status", 429), "status", 400, 599)
        count = _whole(body.get("count", 1), "count", 1, 1000)
        if isinstance(status, JSONResponse):
            return status
        if isinstance(count, JSONResponse):
            return count
        retry_after = body.get("retryAfter")
        if retry_after is not None and (type(retry_after) not in (int, float) or not math.isfinite(retry_after) or not 0 <= retry_after <= 3600):
            return _error(400, "retryAfter must be a number of seconds from 0 to 3600")
        with world.lock:
            world.throttle += [(status, retry_after)] * count
        return JSONResponse({"queued": len(world.throttle)})

    @app.post("/emulator/lost-answers")
    async def lost_answers(request: Request) -> JSONResponse:
        """The next `count` creates (POST of a connection, source or target connection, or flow)
        store the entity, then answer `status` (a 5xx) instead of 201: the answer was lost."""
        body = await _object_body(request)
        if isinstance(body, JSONResponse):
            return body
        count, status = body.get("count", 1), body.get("status", 500)
        if type(count) is not int or not 1 <= count <= 100:
            return _error(400, "count must be an integer from 1 to 100")
        if type(status) is not int or not 500 <= status <= 599:
            return _error(400, "status must be an integer from 500 to 599")
        with world.lock:
            world.lost_answers += [status] * count
            return JSONResponse({"queued": len(world.lost_answers)})

    @app.post("/emulator/tokens/expire")
    def expire() -> JSONResponse:
        with world.lock:
            world.tokens = {t: datetime.now(UTC) - timedelta(seconds=1) for t in world.tokens}
        return JSONResponse({"expired": len(world.tokens)})

    return app


def register(app: FastAPI, world: World, kind: str, listing: Any) -> None:
    """POST, GET (list and one), DELETE for connections, source/target connections and flows."""

    @app.post(f"{FLOWSERVICE}/{kind}", status_code=201, name=f"create_{kind}")
    async def create(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict) or not body.get("name"):
            return _error(400, "name is required")
        spec = body.get("connectionSpec") or {}
        if kind != "flows" and (not isinstance(spec, dict) or not spec.get("id") or not spec.get("version")):
            return JSONResponse({"message": "connectionSpec.id and connectionSpec.version are required"}, status_code=422)
        with world.lock:
            if kind == "flows":
                problem = world.validate_flow(body)
                if problem:
                    return _error(400, problem)
            if kind == "targetConnections" and body.get("baseConnectionId") and body["baseConnectionId"] not in world.entities["connections"]:
                return _not_found("connections", body["baseConnectionId"])
            entity = world.create(kind, body)
            if world.lost_answers:  # the entity exists, but the caller is told the request failed
                return _error(world.lost_answers.pop(0), "Internal server error")
        return JSONResponse({"id": entity["id"], "etag": entity["etag"]}, status_code=201)

    @app.get(f"{FLOWSERVICE}/{kind}", name=f"list_{kind}")
    def list_all(request: Request) -> JSONResponse:
        with world.lock:
            return listing(kind, request, list(world.entities[kind].values()))  # type: ignore[no-any-return]

    @app.get(f"{FLOWSERVICE}/{kind}/{{entity_id}}", name=f"get_{kind}")
    def get_one(entity_id: str) -> JSONResponse:
        with world.lock:
            entity = world.entities[kind].get(entity_id)
        return JSONResponse({"items": [entity]}) if entity else _not_found(kind, entity_id)

    @app.delete(f"{FLOWSERVICE}/{kind}/{{entity_id}}", name=f"delete_{kind}")
    def delete(entity_id: str) -> Response:
        with world.lock:
            if world.entities[kind].pop(entity_id, None) is None:
                return _not_found(kind, entity_id)
        return Response(status_code=202)
