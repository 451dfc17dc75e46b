"""Episodes: a query example plus context pairs drawn from *other* examples of the same task.

"Other" means other by canonical key (arclib.data.canonical): no context pair is the query, or another context
pair, up to colour relabelling and rotations, so the answer is never shown in the context.

A sampler plans every episode (which examples, which augmentation) in the main process, so it knows each
episode's exact token length and can batch episodes of similar length together; DataLoader workers then only
build the planned episodes. Training plans are fresh each epoch (seeded by (seed, epoch)), and with
`per_task` queries per task an epoch takes the next `per_task` of a fixed seeded order of the task's examples,
so over the epochs every example becomes a query. Validation plans are fixed for a seed and unaugmented.

A curriculum by grid size (`curriculum_epochs` E > 0, with `per_task` set) limits training epoch e < E to the
smallest (e + 1) / E of each task's examples by input plus output cells, for the query and the context alike,
widened where needed to the n_context + 1 distinct keys an episode needs. An epoch keeps its number of queries, so
an early pool smaller than `per_task` repeats queries; after the curriculum the rotation goes on at epoch E's
offset, as if it had run all along.

Leave-one-out (`leave_one_out`, training only) adds to each training episode its rotations: every context
example in turn becomes the query, the others its context, so a batch of `batch_size` episodes asks the model for
the output of each of their n_context + 1 examples. Each rotation is encoded on its own: every arm either attends
across the whole source or, being colour-equivariant, labels colours by the query input.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from torch.utils.data import Dataset, Sampler

from arclib.data.augment import Augmentation
from arclib.data.canonical import example_keys
from arclib.data.tokens import Episode

Examples = dict[str, list[tuple[np.ndarray, np.ndarray]]]


@dataclass(frozen=True)
class AugmentConfig:
    dihedral: bool = True
    colours: bool = True
    context_order: bool = True


NO_AUGMENT = AugmentConfig(False, False, False)


@dataclass(frozen=True)
class EpisodePlan:
    task_id: str
    query: int
    context: tuple[int, ...]
    augmentation: Augmentation
    src_length: int  # source tokens (context pairs, query input)
    tgt_length: int  # target tokens (query output + EOS)

    @property
    def length(self) -> int:
        return self.src_length + self.tgt_length


def _grid_len(h: int, w: int) -> int:
    return h * (w + 1) + 1  # cells, ROW per row, one separator (or BOS/EOS)


class EpisodePlanner:
    """Draws episode plans over a pool of examples (task id -> list of (input, output))."""

    def __init__(self, examples: Examples, n_context: int = 2):
        self.keys = {}  # task id -> per example, the index of its canonical key among the task's keys
        for task_id, pairs in examples.items():
            _, self.keys[task_id] = np.unique(
                np.array(example_keys(pairs), dtype=object), return_inverse=True
            )
            if len(np.unique(self.keys[task_id])) < n_context + 1:
                raise ValueError(
                    f"task {task_id} has {len(np.unique(self.keys[task_id]))} distinct examples (by canonical "
                    f"key) in {len(pairs)}; an episode needs {n_context + 1}"
                )
        self.n_context = n_context
        self.shapes = {t: np.array([(*x.shape, *y.shape) for x, y in pairs]) for t, pairs in examples.items()}
        self.queries = [(t, i) for t in sorted(examples) for i in range(len(examples[t]))]

    def smallest_pool(self, task_id: str, fraction: Fraction) -> np.ndarray:
        """(n,) bool: the task's smallest `fraction` of examples by input plus output cells, widened until it
        holds the n_context + 1 distinct keys an episode needs."""
        s = self.shapes[task_id]
        order = np.argsort(s[:, 0] * s[:, 1] + s[:, 2] * s[:, 3], kind="stable")
        # where, along `order`, each distinct key first appears: the pool must reach the (n_context+1)-th
        first_seen = np.sort(np.unique(self.keys[task_id][order], return_index=True)[1])
        n = max(math.ceil(fraction * len(order)), int(first_seen[self.n_context]) + 1)
        pool = np.zeros(len(order), dtype=bool)
        pool[order[:n]] = True
        return pool

    def _context(
        self, task_id: str, query: int, rng: np.random.Generator, pool: np.ndarray | None = None
    ) -> tuple[int, ...]:
        """n_context examples (from `pool` if given) whose keys differ from the query's and from each other's."""
        keys = self.keys[task_id]
        allowed = keys != keys[query]
        if pool is not None:
            allowed &= pool
        context = []
        for _ in range(self.n_context):
            i = int(rng.choice(np.flatnonzero(allowed)))
            context.append(i)
            allowed &= keys != keys[i]
        return tuple(context)

    def plan(
        self,
        task_id: str,
        query: int,
        rng: np.random.Generator,
        augment: AugmentConfig,
        pool: np.ndarray | None = None,
    ) -> EpisodePlan:
        context = self._context(task_id, query, rng, pool)
        aug = Augmentation.random(
            rng, self.n_context, augment.dihedral, augment.colours, augment.context_order
        )
        return self._episode(task_id, query, context, aug)

    def _episode(self, task_id: str, query: int, context: tuple[int, ...], aug: Augmentation) -> EpisodePlan:
        s = self.shapes[task_id][:, [1, 0, 3, 2]] if aug.transposes else self.shapes[task_id]
        src = sum(_grid_len(*s[i, :2]) + _grid_len(*s[i, 2:]) for i in context) + _grid_len(*s[query, :2])
        return EpisodePlan(task_id, query, context, aug, int(src), int(_grid_len(*s[query, 2:])))

    def rotations(self, plan: EpisodePlan) -> list[EpisodePlan]:
        """The plan, then each of its context examples in turn as the query, with the others (the original
        query among them) as its context, under the same augmentation: leave-one-out over the episode's
        n_context + 1 examples, whose keys are distinct, so every rotation is a valid episode."""
        members = (plan.query, *plan.context)
        return [
            self._episode(plan.task_id, members[k], members[k + 1 :] + members[:k], plan.augmentation)
            for k in range(len(members))
        ]

    def query_list(self, per_task: int | None = None) -> list[tuple[str, int]]:
        """Every example as a query, or the first `per_task` of each task (fixed validation subsets)."""
        return self.queries if per_task is None else [(t, i) for t, i in self.queries if i < per_task]

    def rotating_query_list(
        self, per_task: int, seed: int, epoch: int, pools: dict[str, np.ndarray] | None = None
    ) -> list[tuple[str, int]]:
        """Epoch `epoch`'s `per_task` queries per task: the next slice of a seeded order of the task's examples
        (wrapping round), so consecutive epochs use different queries and, over enough epochs, all of them.
        With `pools`, the order keeps only each task's pool."""
        out = []
        for k, task_id in enumerate(sorted(self.shapes)):
            n = len(self.shapes[task_id])
            order = np.random.default_rng([seed, 2, k]).permutation(n)
            if pools is not None:  # the same number of queries, so an epoch keeps its length
                order = order[pools[task_id][order]]
            out += [
                (task_id, int(order[(epoch * per_task + j) % len(order)])) for j in range(min(per_task, n))
            ]
        return out

    def plans(
        self,
        rng: np.random.Generator,
        augment: AugmentConfig,
        per_task: int | None = None,
        queries: list[tuple[str, int]] | None = None,
        pools: dict[str, np.ndarray] | None = None,
    ) -> list[EpisodePlan]:
        """Plans for `queries`, by default query_list(per_task); contexts from `pools` if given."""
        queries = self.query_list(per_task) if queries is None else queries
        return [self.plan(t, i, rng, augment, pools[t] if pools is not None else None) for t, i in queries]


class EpisodeDataset(Dataset):
    """Map-style dataset indexed by EpisodePlan: builds (and augments) the planned episode."""

    def __init__(self, examples: Examples):
        self.examples = examples

    def __getitem__(self, plan: EpisodePlan) -> Episode:
        pairs = self.examples[plan.task_id]
        qx, qy = pairs[plan.query]
        ep = Episode(plan.task_id, [pairs[i] for i in plan.context], qx, qy)
        return plan.augmentation.episode(ep)

    def __len__(self) -> int:
        return sum(len(p) for p in self.examples.values())


def bucket_batches(plans: list[EpisodePlan], batch_size: int, rng: np.random.Generator | None) -> list[list]:
    """Group plans of similar source, then target, length, so little of a batch is padding.

    With rng: shuffled, sorted within chunks of 64 batches, and the batches shuffled; without: fully sorted.
    """

    def key(i: int) -> tuple[int, int]:
        return plans[i].src_length, plans[i].tgt_length

    if rng is None:
        order = sorted(range(len(plans)), key=key)
    else:
        order = list(rng.permutation(len(plans)))
        chunk = batch_size * 64
        order = [i for s in range(0, len(order), chunk) for i in sorted(order[s : s + chunk], key=key)]
    batches = [[plans[i] for i in order[s : s + batch_size]] for s in range(0, len(order), batch_size)]
    if rng is not None:
        batches = [batches[i] for i in rng.permutation(len(batches))]
    return batches


class EpisodeBatchSampler(Sampler):
    """Yields batches of EpisodePlans. Training: fresh plans per epoch; fixed plans otherwise.

    Shards batches across ranks itself (Trainer(use_distributed_sampler=False)), so DDP needs no other change.
    """

    def __init__(
        self,
        planner: EpisodePlanner,
        batch_size: int,
        seed: int,
        augment: AugmentConfig = NO_AUGMENT,
        train: bool = True,
        per_task: int | None = None,
        max_batches: int | None = None,
        rank: int = 0,
        world_size: int = 1,
        curriculum_epochs: int = 0,
        leave_one_out: bool = False,
    ):
        if curriculum_epochs and (not train or per_task is None):
            raise ValueError("a curriculum (curriculum_epochs > 0) is for training, with per_task set")
        if leave_one_out and not train:
            raise ValueError("leave-one-out rotations are for training; validation episodes stay as planned")
        self.planner, self.batch_size, self.seed, self.augment = planner, batch_size, seed, augment
        self.train, self.per_task, self.max_batches = train, per_task, max_batches
        self.curriculum_epochs, self.leave_one_out = curriculum_epochs, leave_one_out
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        if not train:
            plans = planner.plans(np.random.default_rng([seed, 1]), augment, per_task)
            self._fixed = bucket_batches(plans, batch_size, None)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def sampler(self) -> EpisodeBatchSampler:
        # Lightning calls set_epoch on `dataloader.batch_sampler.sampler`; pointing it here gets us the epoch.
        return self

    def curriculum_pools(self) -> dict[str, np.ndarray] | None:
        """This epoch's examples per task under the curriculum by grid size; None once it has ended (or if off)."""
        if self.epoch >= self.curriculum_epochs:
            return None
        fraction = Fraction(
            self.epoch + 1, self.curriculum_epochs
        )  # exact: a float could round one example up
        return {t: self.planner.smallest_pool(t, fraction) for t in self.planner.shapes}

    def _batches(self) -> list[list[EpisodePlan]]:
        if not self.train:
            batches = self._fixed
        else:
            rng = np.random.default_rng([self.seed, 0, self.epoch])
            pools = self.curriculum_pools()
            queries = (
                self.planner.query_list()
                if self.per_task is None
                else self.planner.rotating_query_list(self.per_task, self.seed, self.epoch, pools)
            )
            plans = self.planner.plans(rng, self.augment, queries=queries, pools=pools)
            batches = bucket_batches(plans, self.batch_size, rng)
            if self.leave_one_out:  # after bucketing: an episode's rotations share its batch
                batches = [[r for plan in batch for r in self.planner.rotations(plan)] for batch in batches]
        if self.max_batches is not None:
            batches = batches[: self.max_batches]
        n = len(batches) // self.world_size * self.world_size if self.world_size > 1 else len(batches)
        return batches[self.rank : n : self.world_size]

    def __iter__(self):
        return iter(self._batches())

    def __len__(self) -> int:
        n = len(self.planner.query_list(self.per_task))
        n_batches = -(-n // self.batch_size)
        if self.max_batches is not None:
            n_batches = min(n_batches, self.max_batches)
        return n_batches // self.world_size
