"""Values at the edge of their types: wrong JSON types, huge and non-ASCII numbers, dates at the end of the
calendar. Each gets a 4xx OperationOutcome (or, for a legal date, an ordinary answer), never a 5xx, and the
keep-alive connection it came on still serves the next request."""
from __future__ import annotations

import http.client
import json
from urllib.parse import quote, urlsplit

import pytest

pytestmark = pytest.mark.integration

HUGE = "9" * 5000
SUPERSCRIPT_TWO = "\u00b2"
TASK = {"resourceType": "Task", "status": "requested", "intent": "order"}


def _tx(*entries: dict, kind: str = "transaction") -> bytes:
    return json.dumps({"resourceType": "Bundle", "type": kind, "entry": list(entries)}).encode()


def _put_task(request: dict) -> dict:
    return {"resource": {**TASK, "id": "t1"}, "request": {"method": "PUT", "url": "Task/t1", **request}}


#: (label, method, path, extra headers, body, expected status or None for "any 2xx/4xx")
REFUSED = [
    ("bundle method object", "POST", "", {}, _tx({"request": {"method": {"a": 1}, "url": "Task"}}), 400),
    ("bundle method array", "POST", "", {}, _tx({"request": {"method": ["POST"], "url": "Task"}}), 400),
    ("bundle ifMatch number", "POST", "", {}, _tx(_put_task({"ifMatch": 3})), 400),
    ("bundle ifMatch huge", "POST", "", {}, _tx(_put_task({"ifMatch": f'W/"{HUGE}"'})), 400),
    ("bundle ifNoneExist array", "POST", "", {}, _tx({"resource": TASK, "request": {
        "method": "POST", "url": "Task", "ifNoneExist": ["identifier=a|b"]}}), 400),
    ("body huge integer", "POST", "Task", {}, ('{"resourceType":"Task","status":"requested","intent":"order",'
                                               '"priority":' + HUGE + "}").encode(), 400),
    ("body huge decimal", "POST", "Observation", {}, ('{"resourceType":"Observation","status":"final","code":{},'
                                                      '"valueQuantity":{"value":' + HUGE + ".5}}").encode(), 400),
    ("body NaN", "POST", "Observation", {}, b'{"resourceType":"Observation","status":"final","code":{},'
                                            b'"valueQuantity":{"value":NaN}}', 400),
    ("body 1e999", "POST", "Observation", {}, b'{"resourceType":"Observation","status":"final","code":{},'
                                              b'"valueQuantity":{"value":1e999}}', 400),
    ("If-Match huge", "PUT", "Task/t1", {"If-Match": f'W/"{HUGE}"'}, json.dumps({**TASK, "id": "t1"}).encode(), 400),
    ("If-Match superscript", "PUT", "Task/t1", {"If-Match": 'W/"\u00b2"'},
     json.dumps({**TASK, "id": "t1"}).encode(), 400),
    ("_count superscript", "GET", f"Task?_count={quote(SUPERSCRIPT_TWO)}", {}, None, 400),
    ("_count huge", "GET", f"Task?_count={HUGE}", {}, None, 400),
    ("_offset superscript", "GET", f"Task?_offset={quote(SUPERSCRIPT_TWO)}", {}, None, 400),
    ("_offset huge", "GET", f"Task?_offset={HUGE}", {}, None, 400),
    ("history _count superscript", "GET", f"Task/_history?_count={quote(SUPERSCRIPT_TWO)}", {}, None, 400),
    ("history _offset huge", "GET", f"Task/_history?_offset={HUGE}", {}, None, 400),
    ("vread superscript", "GET", f"Task/t1/_history/{quote(SUPERSCRIPT_TWO)}", {}, None, 404),
    ("vread huge", "GET", f"Task/t1/_history/{HUGE}", {}, None, 404),
    ("$events since superscript", "GET", f"Subscription/s1/$events?eventsSinceNumber={quote(SUPERSCRIPT_TWO)}",
     {}, None, 400),
    ("$events since huge", "GET", f"Subscription/s1/$events?eventsSinceNumber={HUGE}", {}, None, 400),
    ("$events until superscript", "GET", f"Subscription/s1/$events?eventsUntilNumber=1{quote(SUPERSCRIPT_TWO)}",
     {}, None, 400),
    ("$events POST huge", "POST", "Subscription/s1/$events", {}, json.dumps(
        {"resourceType": "Parameters", "parameter": [{"name": "eventsSinceNumber", "valueInteger": 10 ** 40}]}
    ).encode(), 400),
    ("$find _count superscript", "GET", f"Appointment/$find?_count={quote(SUPERSCRIPT_TWO)}", {}, None, 400),
    ("date year 0", "GET", "Task?authored-on=0000-01-01", {}, None, 400),
    ("date month 13", "GET", "Task?authored-on=2024-13", {}, None, 400),
    ("date hour 25", "GET", "Task?_lastUpdated=2024-01-01T25:00:00Z", {}, None, 400),
    ("body huge nested integer", "POST", "Task", {}, ('{"resourceType":"Task","status":"requested","intent":"order",'
                                                   '"input":[{"type":{},"valueInteger":' + HUGE + "}]}").encode(),
     400),
]

#: Legal values at the end of the calendar: an ordinary answer (a searchset, possibly empty).
ANSWERED = [
    ("_lastUpdated year 9999", "GET", "Task?_lastUpdated=9999", {}, None),
    ("_lastUpdated 9999-12", "GET", "Task?_lastUpdated=9999-12", {}, None),
    ("_lastUpdated 9999-12-31", "GET", "Task?_lastUpdated=9999-12-31", {}, None),
    ("_lastUpdated gt last second", "GET", f"Task?_lastUpdated=gt{quote('9999-12-31T23:59:59Z')}", {}, None),
    ("_lastUpdated west of UTC", "GET", f"Task?_lastUpdated=le{quote('9999-12-31T23:59:59-11:00')}", {}, None),
    ("_lastUpdated east of UTC", "GET", f"Task?_lastUpdated=ge{quote('0001-01-01T00:00:00+14:00')}", {}, None),
    ("date 9999-12-31", "GET", "Task?authored-on=9999-12-31", {}, None),
    ("history _since 9999", "GET", f"Task/_history?_since={quote('9999-12-31T23:59:59Z')}", {}, None),
    ("history _since 9999 instance", "GET", "Task/t1/_history?_since=9999-12-31", {}, None),
    ("$find start 9999", "GET", "Appointment/$find?start=9999-12-31", {}, None),
    ("$find start last second", "GET", f"Appointment/$find?start={quote('9999-12-31T23:59:59Z')}", {}, None),
    ("$find end 9999", "GET", "Appointment/$find?end=9999-12-31", {}, None),
    ("Slot start 9999", "GET", "Slot?start=9999-12-31", {}, None),
]


class KeepAlive:
    """One HTTP/1.1 keep-alive connection (``http.client``), the way a pooled client uses it."""

    def __init__(self, base_url: str, token: str):
        parts = urlsplit(base_url)
        self.prefix = parts.path
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.token = token

    def request(self, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
        all_headers = {"Authorization": f"Bearer {self.token}", "Content-Type": "application/fhir+json",
                       **(headers or {})}
        target = self.prefix + ("/" + path if path else "")
        self.conn.request(method, target, body=body, headers=all_headers)
        response = self.conn.getresponse()
        data = response.read()
        return response, data

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
async def keep_alive(ehr_tenant):
    await ehr_tenant.client.update({**TASK, "id": "t1"})
    conn = KeepAlive(ehr_tenant.base_url, await ehr_tenant.client.access_token())
    yield conn
    conn.close()


def _follow_up_works(conn: KeepAlive, response) -> None:
    """The next request on the same connection is served; a server that means to close says so first."""
    if (response.getheader("connection") or "").lower() == "close":
        conn.conn.close()
    again, data = conn.request("GET", "Task/t1")
    assert again.status == 200, data[:200]
    assert json.loads(data)["id"] == "t1"


@pytest.mark.parametrize("label,method,path,headers,body,status", REFUSED, ids=[c[0] for c in REFUSED])
def test_edge_values_are_refused_with_an_outcome(keep_alive, label, method, path, headers, body, status):
    response, data = keep_alive.request(method, path, headers, body)
    assert response.status == status, (label, response.status, data[:300])
    outcome = json.loads(data)
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["diagnostics"]
    assert len(data) < 4000, "the refusal does not echo the huge value"
    _follow_up_works(keep_alive, response)


@pytest.mark.parametrize("label,method,path,headers,body", ANSWERED, ids=[c[0] for c in ANSWERED])
def test_dates_at_the_end_of_the_calendar_are_answered(keep_alive, label, method, path, headers, body):
    response, data = keep_alive.request(method, path, headers, body)
    assert response.status == 200, (label, response.status, data[:300])
    assert json.loads(data)["resourceType"] == "Bundle"
    _follow_up_works(keep_alive, response)


def test_a_transaction_with_a_bad_entry_keeps_nothing(keep_alive):
    body = _tx({"resource": {**TASK, "id": "t2"}, "request": {"method": "PUT", "url": "Task/t2"}},
               _put_task({"ifMatch": 1}))
    response, data = keep_alive.request("POST", "", None, body)
    assert response.status == 400, data[:300]
    assert "ifMatch" in json.loads(data)["issue"][0]["diagnostics"]
    missing, _ = keep_alive.request("GET", "Task/t2")
    assert missing.status == 404


def test_a_batch_reports_a_bad_entry_in_its_own_response(keep_alive):
    body = _tx({"request": {"method": {"a": 1}, "url": "Task"}}, _put_task({"ifMatch": 1}),
               {"request": {"method": "GET", "url": "Task/t1"}}, kind="batch")
    response, data = keep_alive.request("POST", "", None, body)
    assert response.status == 200, data[:300]
    statuses = [e["response"]["status"] for e in json.loads(data)["entry"]]
    assert statuses == ["400", "400", "200 OK"], statuses


def test_an_unexpected_error_closes_the_connection_cleanly(ehr_tenant, keep_alive, monkeypatch):
    """A failure nobody anticipated is a 500 OperationOutcome that says ``Connection: close``."""
    from services.ehr import search

    def broken(*_args, **_kwargs):
        raise RuntimeError("simulated defect")

    monkeypatch.setattr(search, "parse", broken)
    response, data = keep_alive.request("GET", "Task?status=requested")
    assert response.status == 500 and json.loads(data)["resourceType"] == "OperationOutcome"
    assert (response.getheader("connection") or "").lower() == "close"
    monkeypatch.undo()
    _follow_up_works(keep_alive, response)


@pytest.mark.parametrize("status,headers,body", [
    (413, {}, b'{"resourceType":"Task","note":[{"text":"' + b"x" * (8 * 1024 * 1024 + 10) + b'"}]}'),
    (415, {"Content-Type": "application/fhir+xml"}, b"<Task/>" * 1000),
    (404, {}, None),
], ids=["too large", "wrong type", "unknown type"])
def test_refusals_before_the_body_is_read_keep_the_connection_usable(keep_alive, status, headers, body):
    path = "Nonsense" if status == 404 else "Task"
    response, data = keep_alive.request("POST" if body else "GET", path, headers, body)
    assert response.status == status and json.loads(data)["resourceType"] == "OperationOutcome"
    _follow_up_works(keep_alive, response)
