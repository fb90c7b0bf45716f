"""Run in verl 0.9.1's own environment (make clients-env: .venv-verl), by tests/integration/test_clients.py:
the verl block of docs/serving.md as verl's trainer reads it, through verl's own code.

    .venv-verl/bin/python tests/clients/verl_reward_loop.py OVERRIDES_JSON TOKENIZER_DIR

1. Compose verl's trainer config (`ppo_trainer`, with Hydra, as `verl.trainer.main_ppo` does) with the doc's
   settings as overrides.
2. Load the reward function and the reward manager class the way the trainer does
   (verl.trainer.ppo.reward.get_custom_reward_fn, resolve_reward_manager_cls).
3. Score hand-built DataProto samples with that manager's `run_single` (its reward loop), against
   $REFLECTRM_URL: one with a reference answer and one without.
Prints one JSON line: what verl computed, and the manager's name and class.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path


def main() -> None:
    overrides, tokenizer_dir = json.loads(sys.argv[1]), sys.argv[2]
    import numpy as np
    import torch
    import verl
    from hydra import compose, initialize_config_dir
    from transformers import AutoTokenizer
    from verl import DataProto
    from verl.trainer.ppo.reward import get_custom_reward_fn, resolve_reward_manager_cls

    config_dir = str(Path(verl.__file__).parent / "trainer" / "config")
    with initialize_config_dir(config_dir=config_dir, version_base=None):
        config = compose(config_name="ppo_trainer", overrides=overrides)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    fn = get_custom_reward_fn(config)
    if fn is None:
        print(json.dumps({"error": "verl found no custom reward function in this config"}))
        return
    try:
        cls = resolve_reward_manager_cls(config)
    except ValueError as err:
        print(json.dumps({"error": f"{type(err).__name__}: {err}"}))
        return

    def sample(prompt: str, response: str, reference: str | None) -> DataProto:
        ids = tokenizer(response, add_special_tokens=False)["input_ids"]
        return DataProto.from_dict(
            tensors={
                "responses": torch.tensor([ids]),
                "attention_mask": torch.ones(1, 4 + len(ids), dtype=torch.long),  # a 4-token prompt, then the response
            },
            non_tensors={
                "data_source": np.array(["reflectrm_test"], dtype=object),
                "reward_model": np.array([{"ground_truth": reference}], dtype=object),
                "extra_info": np.array([{"prompt": prompt}], dtype=object),
            },
        )

    async def run() -> list[dict]:
        manager = cls(config, tokenizer, fn)
        return [
            await manager.run_single(sample("What is 2 + 2?", "4", "The answer is 4.")),
            await manager.run_single(sample("What is 2 + 2?", "4", None)),
        ]

    out = asyncio.run(run())
    print(
        json.dumps(
            {
                "verl": verl.__version__,
                "manager": config.reward.reward_manager.name,
                "manager_class": cls.__name__,
                "function": config.reward.custom_reward_function.name,
                "results": [
                    {
                        "reward_score": float(r["reward_score"]),
                        "reward_extra_info": {k: v for k, v in r["reward_extra_info"].items()},
                    }
                    for r in out
                ],
            },
            default=str,
        )
    )


if __name__ == "__main__":
    main()
