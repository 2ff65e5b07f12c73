"""A finished run as an HTTP service (`gprec serve`): a FastAPI app over `Predictor` and
`Recommender`, loaded once when the app is made.

- `GET /health`: the run (model, task, directory) and the request columns it takes.
- `POST /predict` `{"rows": [{"user_id": "196", "item_id": "242"}, ...]}`: the run's scores of
  the rows, in order (`Predictor`: the same numbers, bit for bit), with per input field the
  rows whose value was unseen in training and per field looked up from the catalogue its rows.
- `POST /recommend` `{"user": "196", "k": 10}` or `{"users": ["196", "186"], "k": 10}`: each
  user's top k (`Recommender`), training items left out. An unknown user: 404.

The row model is built from the run (`RowEncoder.required()` / `.joinable()`): every required
column is a required property, the user and item features the catalogue holds are optional
(left out or null: looked up by the id, per row), any other property is refused. Values are
strings or integers (an integer, or a number without fraction, is matched as its decimal
string, as a CSV column of ids is).
Malformed JSON, a missing column, a wrong type, an unknown property, an empty list: 422 in
FastAPI's validation format, naming the field. Oversized requests are refused with 413 before
anything is scored: a body over `max_body_bytes` (by its Content-Length, or counted while it
streams in), more than `max_rows` rows or `max_users` users.

Scoring runs in FastAPI's threadpool (the endpoints are plain functions), so the event loop
keeps accepting requests while a model runs; torch's intra-op threads are the caller's choice
(`threads`; `gprec serve --threads`, default 1: concurrent requests are what runs in parallel).

No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations at
runtime, and the request models are classes local to `create_app`.
"""

from collections import defaultdict
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import polars as pl
from fastapi import FastAPI, HTTPException
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    create_model,
)
from starlette.exceptions import HTTPException as StarletteHTTPException

from gprec.errors import ConfigError, DataError
from gprec.serving.catalogue import CATALOGUE, catalogue_of
from gprec.serving.predict import SCORE_ROWS, Predictor
from gprec.serving.recommend import Recommender

DEFAULT_MAX_ROWS = 10_000  # rows in one /predict request
DEFAULT_MAX_USERS = 1_000  # users in one /recommend request (each scores the whole catalogue)
DEFAULT_MAX_BODY_BYTES = 8 * 2**20  # about 60,000 ML-100K rows with every field given


API = """Scores and top-k items from a finished gprec run.

- `POST /predict`: rows as objects with the run's columns (see `Row`; `GET /health` lists
  them): the user and item ids are required, the user and item features may be left out (or
  null) and are then the run's own for that id. Values are strings or integers, matched as
  strings against the run's vocabularies; a value unseen in training is scored with the
  unseen index and counted in `unseen`.
- `POST /recommend`: `{"user": ID}` or `{"users": [ID, ...]}` and `k`: each user's k best
  items, the items the user interacted with in training left out. An unknown user: 404.

Malformed requests: 422 naming the field. Too many rows or users, or too large a body: 413.
"""


def _integral(value: Any) -> Any:
    """A JSON number with no fraction (2.0) is an integer to JSON Schema: let it be one."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Integer = Annotated[StrictInt, BeforeValidator(_integral)]  # no strings, no booleans, no 1.5
Value = StrictStr | Integer


class ErrorDetail(BaseModel):
    detail: str = Field(description="what was wrong, one line")


class FieldInfo(BaseModel):
    name: str
    role: str = Field(description="personal, user, item or context")
    required: bool = Field(description="every row must give it")
    looked_up_by: str | None = Field(
        description="when left out, the value comes from the run's catalogue by this key"
    )


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    task: str
    run_dir: str
    fields: list[FieldInfo] = Field(description="the columns a /predict row takes")
    recommend: bool = Field(description="whether /recommend is served (it needs a catalogue)")
    users: int | None = Field(description="users /recommend knows")
    items: int | None = Field(description="items /recommend ranks")
    max_rows: int
    max_users: int
    max_body_bytes: int


class PredictResponse(BaseModel):
    rows: int
    scores: list[float] = Field(
        description="the run's prediction of each row, in order: a probability (binary), a "
        "rating (regression) or a ranking score (implicit)"
    )
    unseen: dict[str, int] = Field(
        description="per field read from the rows: rows whose value training never saw "
        "(scored with the unseen index)"
    )
    looked_up: dict[str, int] = Field(
        description="per feature field left out: rows whose value came from the run's catalogue"
    )


class RecommendOne(BaseModel):
    model_config = ConfigDict(extra="forbid", title="RecommendOne")
    user: Value = Field(description="a user id of the run's training data")
    k: Integer = Field(10, ge=1, description="list length")


class RankedItem(BaseModel):
    rank: int
    item: str
    score: float


class UserRecommendation(BaseModel):
    user: str
    items: list[RankedItem] = Field(description="best first; training items left out")
    excluded_training_items: int
    candidates: int


class RecommendResponse(BaseModel):
    k: int
    recommendations: list[UserRecommendation]


def create_app(
    run_dir: str | Path,
    max_rows: int = DEFAULT_MAX_ROWS,
    max_users: int = DEFAULT_MAX_USERS,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    threads: int | None = None,
    rebuild_catalogue: bool = False,
) -> FastAPI:
    """The app serving the finished run in `run_dir` (loaded here, once). `threads`: torch's
    intra-op threads for the whole process (None: leave them as they are). One `ConfigError`
    line when the run cannot be loaded."""
    from gprec.training.load import load_run

    for name, value in (("max_rows", max_rows), ("max_users", max_users)):
        if value < 1:
            raise ConfigError(f"{name} must be at least 1, not {value}")
    if max_body_bytes < 1:
        raise ConfigError(f"max_body_bytes must be at least 1, not {max_body_bytes}")
    if threads is not None:
        if threads < 1:
            raise ConfigError(f"threads must be at least 1, not {threads}")
        import torch

        torch.set_num_threads(threads)

    run = load_run(run_dir)
    has = (Path(run_dir) / CATALOGUE).is_file()
    catalogue = catalogue_of(run, rebuild_catalogue) if has or rebuild_catalogue else None
    predictor = Predictor(run, catalogue)
    recommender, why_not = None, "the run has no catalogue.npz"
    if catalogue is not None:
        try:
            recommender = Recommender(run, catalogue)
        except ConfigError as e:
            why_not = str(e)

    encoder = predictor.encoder
    joinable = encoder.joinable()
    names = [f.name for f in encoder.raw_fields]
    Row = _row_model(encoder.raw_fields, joinable)
    optional = [i for i, n in enumerate(names) if n in joinable]

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid", title="PredictRequest")
        rows: list[Row] = Field(  # type: ignore[valid-type]
            min_length=1,
            description=f"the rows to score (at most {max_rows:,d}: more is refused with 413)",
            json_schema_extra={"maxItems": max_rows},
        )

    class RecommendMany(BaseModel):
        model_config = ConfigDict(extra="forbid", title="RecommendMany")
        users: list[Value] = Field(
            min_length=1,
            description=f"user ids (at most {max_users:,d}: more is refused with 413)",
            json_schema_extra={"maxItems": max_users},
        )
        k: Integer = Field(10, ge=1, description="list length")

    app = FastAPI(
        title="gprec",
        summary=f"scores and top-k items of the run {Path(run_dir).name}",
        description=API,
    )
    app.add_middleware(BodyLimit, max_bytes=max_body_bytes)
    app.add_exception_handler(StarletteHTTPException, _undecodable_body_is_422)
    app.state.predictor, app.state.recommender = predictor, recommender

    errors = {
        413: {"model": ErrorDetail, "description": "too many rows or users, or too large a body"}
    }
    health = Health(
        status="ok",
        model=str(run.config.model.get("name", "?")),
        task=run.config.train.task,
        run_dir=str(run_dir),
        fields=[
            FieldInfo(
                name=f.name,
                role=str(f.role),
                required=f.name not in joinable,
                looked_up_by=joinable.get(f.name),
            )
            for f in encoder.raw_fields
        ],
        recommend=recommender is not None,
        users=None if recommender is None else int(catalogue.known_users().sum()),
        items=None if recommender is None else catalogue.n_items,
        max_rows=max_rows,
        max_users=max_users,
        max_body_bytes=max_body_bytes,
    )

    @app.get("/health", response_model=Health)
    def get_health() -> Health:
        """The run being served and the columns /predict takes."""
        return health

    @app.post("/predict", response_model=PredictResponse, responses=errors)
    def post_predict(request: PredictRequest) -> PredictResponse:
        """Score rows with the run's model (the numbers `gprec predict` gives)."""
        rows = request.rows
        if len(rows) > max_rows:
            raise HTTPException(413, f"{len(rows):,d} rows; at most {max_rows:,d} per request")
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for r, row in enumerate(rows):  # rows giving the same optional fields go together
            groups[tuple(i for i in optional if getattr(row, f"f{i}") is not None)].append(r)
        unseen: dict[str, int] = {}
        looked_up: dict[str, int] = {}
        encoded = []
        for given, where in groups.items():
            columns = [i for i in range(len(names)) if i not in optional or i in given]
            frame = pl.DataFrame(
                {names[i]: [_text(getattr(rows[r], f"f{i}")) for r in where] for i in columns},
                schema={names[i]: pl.String for i in columns},
            )
            try:
                plan = predictor.plan(frame.columns, "the request")
                if len(groups) == 1:
                    scores, enc = predictor.score(frame, plan)
                else:
                    enc = predictor.encode(frame, plan)
            except DataError as e:
                raise RequestValidationError(
                    [{"loc": ("body", "rows"), "msg": str(e), "type": "value_error"}]
                ) from None
            for name in plan.from_input:
                unseen[name] = unseen.get(name, 0) + enc.unseen.get(name, 0)
            for name in plan.joined:
                looked_up[name] = looked_up.get(name, 0) + len(where)
            encoded.append((where, enc.X))
        if len(groups) > 1:  # one forward pass over the rows in request order, as score does
            X = np.empty((len(rows), encoded[0][1].shape[1]), dtype=np.int64)
            for where, part in encoded:
                X[where] = part
            scores = predictor.run.predict(X, batch_size=SCORE_ROWS)
        return PredictResponse(
            rows=len(rows),
            scores=np.asarray(scores, dtype=np.float32).tolist(),
            unseen={n: unseen[n] for n in names if n in unseen},
            looked_up={n: looked_up[n] for n in names if n in looked_up},
        )

    if recommender is not None:

        @app.post(
            "/recommend",
            response_model=RecommendResponse,
            responses={404: {"model": ErrorDetail, "description": "an unknown user"}, **errors},
        )
        def post_recommend(request: RecommendOne | RecommendMany) -> RecommendResponse:
            """Each user's top k items of the run's catalogue, training items left out (the
            lists `gprec recommend` gives)."""
            if isinstance(request, RecommendOne):
                users = [_text(request.user)]
            else:
                users = [_text(u) for u in request.users]
            if len(users) > max_users:
                raise HTTPException(
                    413, f"{len(users):,d} users; at most {max_users:,d} per request"
                )
            try:
                recommender.user_codes(users)
            except ConfigError as e:
                raise HTTPException(404, str(e)) from None
            recs = recommender.recommend(users, request.k)
            return RecommendResponse(k=request.k, recommendations=[r.to_dict() for r in recs])

    else:
        app.state.recommend_unavailable = why_not
    return app


def _row_model(raw_fields, joinable: dict[str, str]) -> type[BaseModel]:
    """The pydantic model of one /predict row: the run's fields as properties (aliases: a
    field's name need not be a Python identifier), the joinable ones optional."""
    properties: dict[str, Any] = {}
    for i, f in enumerate(raw_fields):
        if f.name in joinable:
            properties[f"f{i}"] = (
                Value | None,
                Field(
                    None,
                    alias=f.name,
                    description=f"{f.role} field; optional: left out or null, it is the run's "
                    f"value for the row's {joinable[f.name]}",
                ),
            )
        else:
            properties[f"f{i}"] = (
                Value,
                Field(alias=f.name, description=f"{f.role} field; required"),
            )
    return create_model(
        "Row", __config__=ConfigDict(extra="forbid", populate_by_name=False), **properties
    )


async def _undecodable_body_is_422(request, exc):
    """A body that is not UTF-8 is malformed JSON too: 422 as FastAPI gives for bad JSON,
    instead of its 400 "There was an error parsing the body"."""
    if exc.status_code == 400 and isinstance(exc.__cause__, UnicodeDecodeError):
        error = {
            "type": "json_invalid",
            "loc": ["body", exc.__cause__.start],
            "msg": "JSON decode error",
            "input": {},
            "ctx": {"error": "the body is not UTF-8 text"},
        }
        return JSONResponse({"detail": [error]}, status_code=422)
    return await http_exception_handler(request, exc)


def _text(value: str | int) -> str:
    return value if isinstance(value, str) else str(value)


class BodyLimit:
    """ASGI middleware: 413 for a request body over `max_bytes`, by its Content-Length before
    reading it, or while it streams in (chunked), before the app parses it."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    return await _reply(scope, receive, send, 400, "Content-Length is no number")
                if length > self.max_bytes:
                    detail = f"request body of {length:,d} bytes; at most {self.max_bytes:,d}"
                    return await _reply(scope, receive, send, 413, detail)
        received = 0

        async def limited():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, f"request body over {self.max_bytes:,d} bytes")
            return message

        return await self.app(scope, limited, send)


async def _reply(scope, receive, send, status: int, detail: str) -> None:
    await JSONResponse({"detail": detail}, status_code=status)(scope, receive, send)
