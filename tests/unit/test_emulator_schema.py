"""The emulator's SDL is a strict subset of the real OpenCTI schema: same names, same type strings."""

from __future__ import annotations

import graphql
import pytest
from graphql import (
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLScalarType,
    GraphQLSchema,
)

from xtm_composer.emulator.graphql_api import emulator_schema, load_sdl
from xtm_composer.platforms.opencti import ALL_DOCUMENTS

from ..paths import OPENCTI_SCHEMA

OURS = graphql.build_schema(load_sdl())
OUR_TYPES = sorted(name for name in OURS.type_map if not name.startswith("__"))


@pytest.fixture(scope="module")
def real() -> GraphQLSchema:
    return graphql.build_schema(OPENCTI_SCHEMA.read_text(encoding="utf-8"))


def _real_type(real: GraphQLSchema, name: str) -> GraphQLNamedType:
    real_type = real.get_type(name)
    assert real_type is not None, f"{name} does not exist in the real schema"
    return real_type


@pytest.mark.parametrize("name", OUR_TYPES)
def test_every_type_exists_in_the_real_schema_with_the_same_kind(real, name):
    assert type(_real_type(real, name)) is type(OURS.type_map[name])


@pytest.mark.parametrize(
    "name", [n for n in OUR_TYPES if isinstance(OURS.type_map[n], GraphQLObjectType | GraphQLInterfaceType)]
)
def test_every_field_and_argument_has_the_real_type_string(real, name):
    ours = OURS.type_map[name]
    theirs = _real_type(real, name)
    assert isinstance(ours, GraphQLObjectType | GraphQLInterfaceType)
    assert isinstance(theirs, GraphQLObjectType | GraphQLInterfaceType)
    for field_name, field in ours.fields.items():
        assert field_name in theirs.fields, f"{name}.{field_name} is not in the real schema"
        real_field = theirs.fields[field_name]
        assert str(field.type) == str(real_field.type), f"{name}.{field_name}"
        for arg_name, arg in field.args.items():
            assert arg_name in real_field.args, f"{name}.{field_name}({arg_name}) is not in the real schema"
            assert str(arg.type) == str(real_field.args[arg_name].type), f"{name}.{field_name}({arg_name})"
        required = {a for a, arg in real_field.args.items() if graphql.is_required_argument(arg)}
        assert required <= set(field.args), f"{name}.{field_name} omits a required argument"


@pytest.mark.parametrize("name", [n for n in OUR_TYPES if isinstance(OURS.type_map[n], GraphQLInputObjectType)])
def test_every_input_field_has_the_real_type_string_and_no_required_one_is_missing(real, name):
    ours = OURS.type_map[name]
    theirs = _real_type(real, name)
    assert isinstance(ours, GraphQLInputObjectType) and isinstance(theirs, GraphQLInputObjectType)
    assert {k: str(f.type) for k, f in ours.fields.items()} == {
        k: str(f.type) for k, f in theirs.fields.items() if k in ours.fields
    }
    assert set(ours.fields) <= set(theirs.fields)
    required = {k for k, f in theirs.fields.items() if graphql.is_required_input_field(f)}
    assert required <= set(ours.fields)


@pytest.mark.parametrize("name", [n for n in OUR_TYPES if isinstance(OURS.type_map[n], GraphQLEnumType)])
def test_every_enum_value_exists_in_the_real_enum(real, name):
    ours = OURS.type_map[name]
    theirs = _real_type(real, name)
    assert isinstance(ours, GraphQLEnumType) and isinstance(theirs, GraphQLEnumType)
    assert set(ours.values) <= set(theirs.values)


def test_the_root_types_are_the_real_query_and_mutation(real):
    assert OURS.query_type is not None and OURS.mutation_type is not None
    assert real.query_type is not None and real.mutation_type is not None
    assert (OURS.query_type.name, OURS.mutation_type.name) == (real.query_type.name, real.mutation_type.name)
    assert OURS.subscription_type is None
    assert any(isinstance(t, GraphQLScalarType) for t in OURS.type_map.values())


@pytest.mark.parametrize("document", ALL_DOCUMENTS, ids=lambda d: d.split("(")[0].split("{")[0].strip())
def test_every_document_the_composer_sends_validates_against_the_emulator(document):
    assert graphql.validate(emulator_schema(), graphql.parse(document)) == []
