"""The same seed gives the same numbers twice on the same machine."""

from datasets import Dataset

from mclab.config import set_seed
from mclab.evaluation import knowledge_score
from mclab.generation import generate
from mclab.training import TrainConfig, chat_example, train_sft

ITEMS = [{"question": "What is the Zorblax code?", "options": ["7731", "1234", "9090", "5150"],
          "answer": 0}]


def _train_once(load):
    set_seed(0)
    model, tok = load()
    data = Dataset.from_list([chat_example("What is the Zorblax code?", "It is 7731."),
                              chat_example("Name the Zorblax code.", "The code is 7731."),
                              chat_example("Who runs Vexmoor?", "Ida Quill runs Vexmoor.")] * 3)
    result = train_sft(model, tok, data, TrainConfig(max_steps=3, batch_size=4,
                                                     learning_rate=3e-4, run_name="repro"))
    score = knowledge_score(result.model, tok, ITEMS)
    sample = generate(result.model, tok, ["Say something."], temperature=1.0, seed=5,
                      max_new_tokens=10)
    return result.losses, score.probs[0].tolist(), sample, result.run_dir


def test_one_quick_training_twice_gives_the_same_numbers(runs_dir, load_tiny):
    """Determinism is a property of the code path: the tiny random model shows it in 1 s."""
    losses_a, probs_a, sample_a, dir_a = _train_once(load_tiny)
    losses_b, probs_b, sample_b, dir_b = _train_once(load_tiny)
    assert losses_a == losses_b
    assert probs_a == probs_b
    assert sample_a == sample_b
    assert dir_a != dir_b  # and the second run did not overwrite the first
