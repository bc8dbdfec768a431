"""Trainer resources from options, and which service replicas a training borrows (pure planning).

``resources_of`` gives a trainer's per-worker resources from its options (``num_cpus``,
``num_gpus``); ``plan_lending`` picks the fewest replicas whose resources, with what each node has
free, hold every bundle of a training (a bundle never spans nodes), in the order of preference it
is handed, or says that even all of them are not enough.
"""

from __future__ import annotations

import pytest

from engine.contracts import Resources, resources_of
from engine.runtime.placement import fits, needs, placeable, plan_lending
from engine.training.lora import LoraTrainer, TrainOptions
from plugins.trainer_dpo import DPOOptions, DPOTrainerStage
from plugins.trainer_sft import SFTTrainerStage

GPU_REPLICA = {"CPU": 1.0, "GPU": 1.0}


def test_resources_of_a_lora_trainer_follow_its_options() -> None:
    assert resources_of(LoraTrainer, TrainOptions(num_gpus=1)) == Resources(num_cpus=2, num_gpus=1)
    assert resources_of(SFTTrainerStage, SFTTrainerStage.Options()) == Resources(num_cpus=2, num_gpus=0)
    assert resources_of(DPOTrainerStage, DPOOptions(num_cpus=4, num_gpus=0.5)) == Resources(num_cpus=4,
                                                                                           num_gpus=0.5)
    assert resources_of(LoraTrainer, None) == LoraTrainer.resources  # no options: the declared ones


def test_resources_of_a_stage_without_resources_for_is_its_declared_resources() -> None:
    from plugins.sampler_scripted import ScriptedOptions, ScriptedSampler

    assert resources_of(ScriptedSampler, ScriptedOptions()) == ScriptedSampler.resources


@pytest.mark.parametrize("bad", [{"num_gpus": -1}, {"num_cpus": 0}])
def test_trainer_resources_are_validated(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TrainOptions(**bad)


def test_needs_and_fits() -> None:
    assert needs(Resources(num_cpus=2, num_gpus=0)) == {"CPU": 2}
    assert fits({"CPU": 0.1}, {"CPU": 0.3}) == 3  # no float drift: 0.3 // 0.1 is 2.0 in floats
    assert fits({}, {}) > 1000


def test_bundles_that_fit_need_no_lending() -> None:
    free = {"a": {"CPU": 4.0, "GPU": 1.0}, "b": {"CPU": 4.0, "GPU": 1.0}}
    assert plan_lending([{"CPU": 2.0, "GPU": 1.0}] * 2, free, [("a", GPU_REPLICA)]) == []
    assert placeable([{"CPU": 2.0, "GPU": 1.0}] * 2, free)
    assert not placeable([{"GPU": 2.0}], free)  # a bundle never spans nodes


def test_the_fewest_replicas_are_lent_in_the_order_given() -> None:
    free = {"a": {"CPU": 3.0}, "b": {"CPU": 3.0}}
    held = [("b", GPU_REPLICA), ("a", GPU_REPLICA)]  # replica 1 of a pool, then replica 0
    assert plan_lending([{"CPU": 1.0, "GPU": 1.0}], free, held) == [0]  # the first one given
    assert plan_lending([{"CPU": 1.0, "GPU": 1.0}] * 2, free, held) == [0, 1]  # all of them


def test_a_node_lends_as_many_replicas_as_one_bundle_needs() -> None:
    free = {"a": {"CPU": 8.0}, "b": {"CPU": 8.0}}
    held = [("a", {"CPU": 1.0, "GPU": 1.0}), ("b", {"CPU": 1.0, "GPU": 1.0}), ("b", {"CPU": 1.0, "GPU": 1.0})]
    # a 2-GPU bundle fits only on b, where both replicas must go; a's replica stays
    assert plan_lending([{"CPU": 1.0, "GPU": 2.0}], free, held) == [1, 2]


def test_replicas_that_hold_nothing_useful_are_not_lent() -> None:
    free = {"a": {"CPU": 0.0, "GPU": 0.0}}
    held = [("a", {"CPU": 1.0}), ("a", {"CPU": 1.0, "GPU": 1.0})]  # a sandbox replica, then a sampler
    assert plan_lending([{"GPU": 1.0}], free, held) == [0, 1]  # a node's replicas go in the order given
    assert plan_lending([{"CPU": 1.0}], free, held) == [0]
    assert plan_lending([{"GPU": 1.0}], free, held[::-1]) == [0]  # the sampler first: it alone


def test_cpus_short_on_a_node_count_too() -> None:
    free = {"a": {"CPU": 0.5}, "b": {"CPU": 2.5}}
    held = [("a", {"CPU": 0.5, "GPU": 1.0}), ("b", {"CPU": 0.5, "GPU": 1.0})]
    # a has the GPU once its replica goes, but not the 2 CPUs; b has both
    assert plan_lending([{"CPU": 2.0, "GPU": 1.0}], free, held) == [1]


def test_none_when_even_every_replica_is_not_enough() -> None:
    free = {"a": {"CPU": 4.0}, "b": {"CPU": 4.0}}
    held = [("a", GPU_REPLICA), ("b", GPU_REPLICA)]
    assert plan_lending([{"GPU": 1.0}] * 3, free, held) is None
    assert plan_lending([{"GPU": 2.0}], free, held) is None  # two GPUs, but on two nodes
    assert plan_lending([{"GPU": 1.0}], free, [(None, GPU_REPLICA)]) is None  # one not placed frees nothing


def test_eight_workers_on_eight_gpus_borrow_every_replica() -> None:
    free = {f"n{i}": {"CPU": 16.0} for i in range(2)}
    held = [(f"n{r % 2}", GPU_REPLICA) for r in range(8)]
    assert plan_lending([{"CPU": 2.0, "GPU": 1.0}] * 8, free, held) == list(range(8))
    assert plan_lending([{"CPU": 2.0, "GPU": 1.0}] * 3, free, held) == [0, 1, 2]
