"""Per-collection input schemas: what a write may contain, checked before anything reaches Strapi.

Each schema mirrors a Strapi content type, collection or single type
(``strapi/app/src/api/*/content-types/*/schema.json``): required fields, types, maximum lengths,
enumerations; every other key is refused. A failure is a 422 whose ``details.errors`` lists one
``{"field", "message"}`` per problem, with the field named as the client sent it (``data.title``
for Strapi's ``{"data": {...}}`` body, ``title`` for the flat one).

Field metadata tells the business rules (rules.py) what a field is in Strapi: ``strapi_type:
"richtext"`` for rich text, ``uid_target`` for a uid (slug) field generated from another field.
Adding a content type: write its schema class and add a :class:`CollectionSpec` to :data:`SPECS`
(a single type also goes in ``BFFPROXY_SINGLE_TYPES``; start-up checks the two agree).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate

from .errors import Unprocessable

UID_PATTERN = r"[A-Za-z0-9\-_.~]*\Z"  # Strapi's /^[A-Za-z0-9-_.~]*$/; in Python `$` allows "\n"
STRAPI_STRING_MAX = 255  # a Strapi "string" without maxLength is a varchar(255)

REQUIRED = "This field is required."
NOT_NULL = "This field cannot be empty (null)."


def _messages(**extra: str) -> dict[str, str | list[Any] | dict[Any, Any]]:
    """Error messages worded for editors, not for programmers."""
    return {"required": REQUIRED, "null": NOT_NULL, **extra}


class Utf16Length(validate.Validator):
    """A length range as Strapi (yup, JavaScript) counts it: UTF-16 code units, an emoji counts twice."""

    def __init__(self, *, min: int, max: int, error: str) -> None:
        self.min, self.max, self.message = min, max, error

    def __call__(self, value: str) -> str:
        units = len(value.encode("utf-16-le", "surrogatepass")) // 2
        if not self.min <= units <= self.max:
            raise ValidationError(self.message)
        return value


def text(*, max_length: int | None = None, required: bool = False, **metadata: Any) -> fields.String:
    """A Strapi string/text/richtext field: a JSON string, optionally capped."""
    checks = []
    if max_length is not None:
        limit = f"1 to {max_length}" if required else f"at most {max_length}"
        checks.append(
            Utf16Length(min=1 if required else 0, max=max_length, error=f"Must be {limit} characters long.")
        )
    return fields.String(
        required=required,
        allow_none=not required,
        validate=checks,
        metadata=metadata,
        error_messages=_messages(invalid="Must be text (a JSON string)."),
    )


def uid(target: str) -> fields.String:
    """A Strapi uid field (a slug) generated from ``target`` when absent (see rules.py)."""
    return fields.String(
        allow_none=True,
        validate=[
            validate.Length(
                max=STRAPI_STRING_MAX, error=f"Must be at most {STRAPI_STRING_MAX} characters long."
            ),
            validate.Regexp(UID_PATTERN, error="Only letters, digits and - _ . ~ are allowed."),
        ],
        metadata={"uid_target": target},
        error_messages=_messages(invalid="Must be text (a JSON string)."),
    )


def enumeration(*choices: str) -> fields.String:
    """A Strapi enumeration: one of ``choices``."""
    return fields.String(
        allow_none=True,
        validate=validate.OneOf(choices, error=f"Must be one of: {', '.join(choices)}."),
        error_messages=_messages(invalid="Must be text (a JSON string)."),
    )


class StrictBoolean(fields.Boolean):
    """A JSON true or false, nothing else (marshmallow would take "yes", 1 or "on")."""

    default_error_messages = {"invalid": "Must be true or false."}

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


def _is_reference(value: Any) -> bool:
    """A document reference Strapi 5 accepts: a documentId, a row id, or {documentId}/{id}."""
    if isinstance(value, str):
        return 0 < len(value) <= 64 and value.replace("-", "").replace("_", "").isalnum()
    if isinstance(value, int) and not isinstance(value, bool):
        return value > 0
    if isinstance(value, Mapping) and len(value) == 1:
        ((key, inner),) = value.items()
        return key in ("documentId", "id") and _is_reference(inner)
    return False


class Relation(fields.Field[Any]):
    """A Strapi relation: a reference (to-one), a list of them (to-many), or connect/disconnect/set."""

    default_error_messages = {
        "invalid": "Must be a documentId, a list of them, or {{connect, disconnect, set}} lists of them.",
        "null": NOT_NULL,
    }

    def __init__(self, *, many: bool, target: str, inverse: bool = False) -> None:
        super().__init__(allow_none=True)
        self.many = many
        self.target = target  # the collection (plural API name) it points to
        # Strapi's mappedBy side: setting it rewrites the *target's* documents (their owning field).
        self.inverse = inverse

    def _deserialize(
        self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any
    ) -> Any:
        if self._valid(value):
            return value
        raise self.make_error("invalid")

    def _valid(self, value: Any) -> bool:
        ops = ("connect", "disconnect", "set")
        if isinstance(value, Mapping) and any(key in ops for key in value):
            return all(
                key in ops and isinstance(refs, list) and all(map(_is_reference, refs))
                for key, refs in value.items()
            )
        if self.many:
            return isinstance(value, list) and all(map(_is_reference, value))
        return _is_reference(value)


class StrapiSchema(Schema):
    """Base of the input schemas: unknown keys are refused, messages are editor-friendly."""

    class Meta:
        unknown = RAISE

    error_messages = {
        "unknown": "Unknown field: this collection has no such field.",
        "type": "Must be a JSON object.",
    }


class ArticleSchema(StrapiSchema):
    """api::article.article (draft and publish)."""

    title = text(max_length=200, required=True)
    slug = uid("title")
    excerpt = text()
    body = text(strapi_type="richtext")
    section = enumeration("news", "opinion", "guide")
    featured = StrictBoolean(allow_none=True, error_messages=_messages())
    category = Relation(many=False, target="categories")


class CategorySchema(StrapiSchema):
    """api::category.category (no draft and publish)."""

    name = text(max_length=STRAPI_STRING_MAX, required=True)
    slug = uid("name")
    articles = Relation(many=True, target="articles", inverse=True)  # mappedBy: article.category


class HomepageSchema(StrapiSchema):
    """api::homepage.homepage (a single type, draft and publish)."""

    title = text(max_length=120, required=True)
    tagline = text()
    body = text(strapi_type="richtext")


@dataclass(frozen=True)
class CollectionSpec:
    """A writable content type: its API name, Strapi uid, schema, whether it has drafts, its kind."""

    name: str  # the REST name: plural for a collection type, singular for a single type
    uid: str
    schema: type[StrapiSchema]
    draft_and_publish: bool
    # Keys of the flat /publish body that stand for a field (the seed's {"title", "content"}).
    aliases: Mapping[str, str] = field(default_factory=dict)
    single_type: bool = False  # one document at /api/<name>, no documentIds (Strapi's singleType)

    def api_path(self, document_id: str | None = None) -> str:
        """Its path on Strapi: ``api/<name>``, or a document's ``api/<name>/<documentId>``."""
        return f"api/{self.name}" if document_id is None else f"api/{self.name}/{document_id}"

    @property
    def relations(self) -> dict[str, str]:
        """Relation fields and the collection each points to."""
        declared = self.schema().fields.items()
        return {name: f.target for name, f in declared if isinstance(f, Relation)}

    @property
    def inverse_relations(self) -> dict[str, str]:
        """Relation fields on Strapi's mappedBy side, whose writes change the target's documents."""
        declared = self.schema().fields.items()
        return {name: f.target for name, f in declared if isinstance(f, Relation) and f.inverse}


SPECS: dict[str, CollectionSpec] = {
    "articles": CollectionSpec(
        "articles", "api::article.article", ArticleSchema, True, aliases={"content": "body"}
    ),
    "categories": CollectionSpec("categories", "api::category.category", CategorySchema, False),
    "homepage": CollectionSpec("homepage", "api::homepage.homepage", HomepageSchema, True, single_type=True),
}


def spec_for(collection: str) -> CollectionSpec | None:
    """The write spec of ``collection``, or None when it has no input schema (read-only)."""
    return SPECS.get(collection)


def fields_with(schema: Schema, key: str) -> dict[str, Any]:
    """The schema's field names whose metadata has ``key``, with that metadata value."""
    return {name: f.metadata[key] for name, f in schema.fields.items() if key in f.metadata}


def field_errors(messages: Any, prefix: str = "") -> list[dict[str, str]]:
    """Flatten marshmallow's nested messages into ``[{"field": "data.title", "message": ...}]``."""
    if isinstance(messages, Mapping):
        found = []
        for name, inner in messages.items():
            path = prefix if name == "_schema" else (f"{prefix}.{name}" if prefix else str(name))
            found.extend(field_errors(inner, path))
        return found
    if isinstance(messages, list):
        return [item for message in messages for item in field_errors(message, prefix)]
    return [{"field": prefix or "(body)", "message": str(messages)}]


def invalid(errors: list[dict[str, str]]) -> Unprocessable:
    """The 422 that carries a per-field error list."""
    noun = "problem" if len(errors) == 1 else "problems"
    return Unprocessable(
        f"The content has {len(errors)} {noun}; nothing was saved.", details={"errors": errors}
    )


def load(
    spec: CollectionSpec,
    data: Any,
    *,
    partial: bool,
    prefix: str = "",
    renames: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Validate ``data`` against the collection's schema; raise a 422 listing every problem."""
    if not isinstance(data, Mapping):
        raise invalid([{"field": prefix or "(body)", "message": "Must be a JSON object."}])
    try:
        loaded: dict[str, Any] = spec.schema().load(data, partial=partial)
    except ValidationError as exc:
        errors = field_errors(exc.messages, prefix)
        for error in errors:  # name the field as the client spelled it
            error["field"] = (renames or {}).get(error["field"], error["field"])
        raise invalid(errors) from exc
    return loaded


def load_wrapped(spec: CollectionSpec, body: Any, *, partial: bool) -> dict[str, Any]:
    """Strapi's own body, ``{"data": {...}}``: the wrapper is required and alone."""
    if not isinstance(body, Mapping):
        raise invalid([{"field": "(body)", "message": 'Must be a JSON object like {"data": {...}}.'}])
    errors = [
        {"field": str(key), "message": 'Unknown field: the body holds only "data".'}
        for key in body
        if key != "data"
    ]
    if "data" not in body:
        errors.insert(0, {"field": "data", "message": REQUIRED})
    if errors:
        raise invalid(errors)
    return load(spec, body["data"], partial=partial, prefix="data")


def load_flat(spec: CollectionSpec, body: Any) -> dict[str, Any]:
    """The flat one-shot body (``{"title": ..., "content": ...}``), aliases resolved."""
    if not isinstance(body, Mapping):
        raise invalid([{"field": "(body)", "message": "Must be a JSON object."}])
    data = dict(body)
    renames = {}
    for alias, target in spec.aliases.items():
        if alias in data:
            if target in data:
                raise invalid(
                    [{"field": alias, "message": f"Give either {alias!r} or {target!r}, not both."}]
                )
            data[target] = data.pop(alias)
            renames[target] = alias
    return load(spec, data, partial=False, renames=renames)
