"""Reading the stack's config: `parse()` validates raw values into a `StackConfig` or
raises one `ConfigError` listing every mistake (pure and offline: tests and `make check`
call it directly); `handed()` is the config as the Pulumi CLI hands it to the program.

The package's components take the same config as inputs (components/stack.py, cilium.py):
`stack_inputs()` turns the CLI's keys into a Stack's inputs, `from_stack_inputs()` turns a
Stack's inputs, as any Pulumi language sends them, back into what `parse()` reads, and
`parse_cilium()` validates the `cilium` section alone, with the same messages.

Imports only the config package's own modules (never a component); pulumi only inside
`handed()`.
"""

from __future__ import annotations

import contextlib
import enum
import json
from collections.abc import Callable, Mapping
from typing import Any, get_args

from pydantic import BaseModel, ValidationError

from components.config.aws_facts import (
    InstanceType,
    aws_provider_keys,
    eks_regions,
    instance_facts,
    instance_type_names,
)
from components.config.cilium import CiliumConfig
from components.config.fields import PROJECT, ConfigError, closest
from components.config.messages import describe_error, model_in
from components.config.stack import StackConfig

# Config namespaces a stack file may use: this project's keys, and the providers'.
PROVIDER_NAMESPACES = ("aws", "kubernetes", "eks", "pulumi")
# The AWS provider's keys this program reads (it builds the provider itself, from these).
AWS_KEYS = ("aws:region", "aws:defaultTags")


def parse(
    raw: Mapping[str, Any],
    stack: str,
    describe: Callable[[str], InstanceType] | None = None,
    *,
    offline: bool = False,
) -> StackConfig:
    """Validate raw config values into a StackConfig, or raise ConfigError listing each
    mistake once.

    `raw` holds this project's keys unprefixed (`network`), other namespaces' keys with
    their prefix (`aws:region`); a key set to None counts as unset. With `describe` (EC2's
    facts by instance type name) the instance types are also checked against what
    pulumi-eks and prefix delegation accept, and their facts kept; with `offline`, their
    names are checked against the AWS SDK's list instead.
    """
    values, errors = _project_keys(raw)
    try:
        cfg = StackConfig.model_validate(values, context={"stack": stack})
    except ValidationError as err:
        errors += [describe_error(e) for e in err.errors()]
        cfg = None
    nodes = values.get("nodes")
    types = nodes.get("instanceTypes") if isinstance(nodes, dict) else None
    types = cfg.nodes.instance_types if types is None and cfg is not None else types
    if isinstance(types, list | tuple) and all(isinstance(t, str) for t in types):
        errors += instance_type_names(tuple(types), offline=offline)
    if cfg is not None and describe is not None and not errors:
        # EC2 is asked only with a valid region and list
        try:
            facts = instance_facts(cfg.nodes, cfg.cilium, describe)
        except ConfigError as err:
            errors.append(str(err))
        else:
            cfg.nodes._facts = facts
    if errors or cfg is None:
        raise ConfigError("invalid stack configuration:\n  - " + "\n  - ".join(errors))
    return cfg


def _project_keys(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """This project's keys and aws:region, for the model; a namespace nobody reads is an
    error (`cilium-ek:nodes` would otherwise be ignored without a word)."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    guessed = set()
    for key, value in raw.items():
        namespace, _, name = key.rpartition(":")
        if namespace in ("", PROJECT):
            if value is not None:
                values[name] = value
        elif key in AWS_KEYS:
            if value is not None:
                values[key] = value
        elif namespace == "aws":
            guess = None if name in aws_provider_keys() else _typo_of_aws_key(name)
            if guess in AWS_KEYS:
                guessed.add(guess)
                errors.append(f"{key}: unknown key; did you mean {guess}?")
            else:
                what = (
                    f"unknown key; did you mean {guess}? Not read either" if guess else "not read"
                )
                errors.append(
                    f"{key}: {what}; this program builds its AWS provider from "
                    f"{' and '.join(AWS_KEYS)} only (components/aws.py): choose credentials "
                    "with AWS_PROFILE or `aws sso login`, which the kubeconfig and the teardown "
                    "sweep use as well"
                )
        elif namespace not in PROVIDER_NAMESPACES:
            guess = closest(namespace, (PROJECT, *PROVIDER_NAMESPACES))
            errors.append(
                f"{key}: unknown namespace {namespace!r}"
                f"{f'; did you mean {guess}:{name}? This' if guess else '; this'} program reads "
                f"{PROJECT}:* and the providers' {', '.join(f'{n}:*' for n in PROVIDER_NAMESPACES)}"
            )
    if "aws:region" not in values:
        if "aws:region" not in guessed:  # a typo of it was reported, with the way out
            errors.append(
                "aws:region: not set; set it with `pulumi config set aws:region ap-northeast-2`"
            )
        values["aws:region"] = next(iter(sorted(eks_regions())))  # checks the rest all the same
    return values, errors


def _typo_of_aws_key(name: str) -> str | None:
    """The AWS provider's key `aws:NAME` is most likely a typo of: one this program reads
    first (regoin -> aws:region), else any of the provider's."""
    ours = [key.removeprefix("aws:") for key in AWS_KEYS]
    guess = closest(name, [*ours, *sorted(aws_provider_keys())])
    return f"aws:{guess}" if guess else None


def stack_config_keys(config: Mapping[str, Any]) -> dict[str, Any]:
    """A stack's config as the CLI hands it to a program (every value a string: objects as
    JSON) turned back into values: the objects this program reads parsed, strings kept.

    A number the stack file holds unquoted has been through Pulumi's YAML reader already:
    `kubernetesVersion: 1.30` arrives as the text '1.3', `upgradeCompatibility: 1.20` inside
    the `cilium` object as the JSON number 1.2 (pulumi/pulumi sdk/go/common/resource/config/
    object.go: YAML into float64, MarshalString/MarshalJSON back); messages.py says so."""
    objects = set()
    for name, field in StackConfig.model_fields.items():
        if model_in(field.annotation) is not None:
            key = field.alias or name
            objects.add(key if ":" in key else f"{PROJECT}:{key}")
    values: dict[str, Any] = {}
    for key, value in config.items():
        if key in objects and isinstance(value, str):
            # not JSON: a plain string, which the model refuses with its key
            with contextlib.suppress(json.JSONDecodeError):
                value = json.loads(value)
        values[key] = value
    return values


def handed() -> dict[str, Any]:
    """This stack's configuration as the CLI hands it over: every key (`PULUMI_CONFIG`, and
    the map a language host sets), so that a typo in a key is refused, not ignored as
    `pulumi.Config` would."""
    from pulumi.runtime import config as runtime_config

    return stack_config_keys({**runtime_config.get_config_env(), **runtime_config.CONFIG.get()})


# The Stack component's inputs name the AWS provider's keys without their namespace (an
# input name is an identifier in every language): `region` is aws:region.
STACK_INPUT_AWS_KEYS = {key.partition(":")[2]: key for key in AWS_KEYS}


def stack_inputs(values: Mapping[str, Any]) -> dict[str, Any]:
    """The CLI's config keys (`handed()`) as a Stack component's inputs: this project's keys
    unprefixed, aws:region as `region`, aws:defaultTags as `defaultTags`. Every other key
    is handed on as it is, so that `parse()` refuses a typo in it as it always did."""
    inputs = {}
    for key, value in values.items():
        namespace, _, name = key.rpartition(":")
        if namespace == PROJECT or key in AWS_KEYS:
            key = name
        inputs[key] = value
    return inputs


def from_stack_inputs(inputs: Mapping[str, Any]) -> dict[str, Any]:
    """A Stack component's inputs as `parse()` reads them: `region` and `defaultTags` under
    their aws: keys, an enum member (the generated input types, components/inputs.py) as
    its value, and a whole number that crossed Pulumi's wire as a double (every number
    does; the provider SDK's int conversion in `map_input_properties` is overwritten by
    the plain copy after it) as the int the model wants."""
    values = {STACK_INPUT_AWS_KEYS.get(key, key): _plain(value) for key, value in inputs.items()}
    return _whole_numbers(StackConfig, values)


def parse_cilium(inputs: Mapping[str, Any]) -> CiliumConfig:
    """The `cilium` section alone, as the Cilium component takes it: validated by the same
    model, each mistake named by its key as in the stack config (`cilium.version`)."""
    try:
        return CiliumConfig.model_validate(_whole_numbers(CiliumConfig, _plain(dict(inputs))))
    except ValidationError as err:
        errors = [describe_error({**e, "loc": ("cilium", *e["loc"])}) for e in err.errors()]
        raise ConfigError("invalid cilium settings:\n  - " + "\n  - ".join(errors)) from None


def _plain(value: Any) -> Any:
    """Enum members as their values, in dicts and lists too."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _whole_numbers(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """`values` with a whole float as int wherever `model` (or a section in it) wants int;
    anything else is left for the model to judge."""
    fixed = dict(values)
    for name, field in model.model_fields.items():
        key = field.alias or name
        value = values.get(key)
        inner = model_in(field.annotation)
        if inner is not None and isinstance(value, Mapping):
            fixed[key] = _whole_numbers(inner, dict(value))
        elif (
            int in (field.annotation, *get_args(field.annotation))
            and isinstance(value, float)
            and value.is_integer()
        ):
            fixed[key] = int(value)
    return fixed
