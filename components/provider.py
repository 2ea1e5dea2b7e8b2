"""The AWS provider every AWS resource of the stack uses, built from the validated config.

An explicit provider rather than the default one, so that what it is configured with is
derived, not typed by hand per stack: the region, the user's `aws:defaultTags`, and the
`project` and `stack` tags (cost allocation, cleanup) from the stack's own name. Switching
a live stack from the default provider to this one with the same region and tags changes
no resource: the engine asks the new provider's DiffConfig, which finds nothing to replace
(pulumi/pulumi #18509, Pulumi 3.151 and newer).

Imports the config and nothing else of the program.
"""

from __future__ import annotations

from collections.abc import Sequence

import pulumi
import pulumi_aws as aws

from components.config import PROJECT, StackConfig


def stack_tags(cfg: StackConfig, stack: str) -> dict[str, str]:
    """The default tags of every taggable AWS resource: the user's, then project and stack."""
    return {**cfg.default_tags.tags, "project": PROJECT, "stack": stack}


def aws_provider(
    cfg: StackConfig,
    stack: str,
    after: pulumi.Input[Sequence[pulumi.Resource]] | None = None,
    opts: pulumi.ResourceOptions | None = None,
) -> aws.Provider:
    """`after`: what must succeed before any AWS resource or call (the mesh's checks)."""
    return aws.Provider(
        "aws",
        region=cfg.region,
        default_tags=aws.ProviderDefaultTagsArgs(tags=stack_tags(cfg, stack)),
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=after)),
    )
