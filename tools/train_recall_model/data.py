"""Synthetic multi-round recall conversations, the chat format and the tokenizer for the recall model.

A conversation is a system prompt followed by short rounds of three kinds: fact rounds (the user states a fact made
of randomly combined entities and values, so the model has to copy it rather than memorise it), filler rounds
(small talk, arithmetic, tiny stories) and question rounds that ask for a fact stated earlier in the same
conversation. Everything is deterministic from a seed.

Usage (also called from train.py / run_device.sh):
    python3 data.py --out DIR --tokenizer-seed 1 --heldout-seed 1000003
writes DIR/recall_tok.model (SentencePiece BPE) and DIR/heldout_d{10,30,60}.jsonl.
"""
import argparse
import json
import os
import random

# ---- chat format ----------------------------------------------------------------------------------------------------
# Rendered by the GGUF's Jinja template; the training text is exactly this rendering, preceded by BOS (which the
# engine's tokenizer adds itself because the template does not spell it). No whitespace sits between markers and
# contents, so every content is tokenized on its own (the tokenizer splits the text at special tokens).
SYSTEM_TOKEN, USER_TOKEN, ASSISTANT_TOKEN, END_TOKEN = "<|system|>", "<|user|>", "<|assistant|>", "<|end|>"
ROLE_TOKENS = {"system": SYSTEM_TOKEN, "user": USER_TOKEN, "assistant": ASSISTANT_TOKEN}
CHAT_TEMPLATE = ("{% for message in messages %}{{ '<|' + message['role'] + '|>' + message['content'] + '<|end|>' }}"
                 "{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>' }}{% endif %}")


def render(messages, add_generation_prompt=False):
    """What CHAT_TEMPLATE renders for `messages` (list of {"role", "content"})."""
    text = "".join(ROLE_TOKENS[m["role"]] + m["content"] + END_TOKEN for m in messages)
    return text + (ASSISTANT_TOKEN if add_generation_prompt else "")


# ---- vocabulary of the facts ----------------------------------------------------------------------------------------
NAMES = """Mia Noah Emma Liam Olivia Lucas Ava Elias Sofia Leo Ella Hugo Nora Oscar Alma Felix Ida Max Clara Theo Lina
Jonas Maja Emil Freja Otto Saga Anton Alva Viktor Ebba Karl Tilda Axel Wilma Isak Agnes Nils Stella Erik Greta Lars
Hanna Sven Ingrid Tom Lea Ben Mila Paul Lena Finn Zoe Jan Eva Ali Sara Omar Yara Ravi Priya Arjun Mei Chen Yuki Kenji
Hana Sora Aiko Ivan Olga Boris Nina Pavel Vera Diego Lucia Mateo Elena Pablo Rosa Marco Giulia Luca Chiara Pierre
Camille Louis Chloe Jules Manon Ruth Adam Dora Igor Tara Kofi Ama Kwame Zara Femi Ada Ines Rui Beatriz Tiago Marta
Hamid Layla Samir Noor Kai Luna Remy Iris Amos Edith Cyrus Fiona Gideon Hazel Ivo June Kurt Lotte Magnus Nell Orla
Piet Quinn Rolf Selma Tobias Una Vidar Wendy Xavier Yvonne Zeno Bram Cleo Dag Elin Frode Gro Hedda Ines Jakob Kari
Leif Mona Odd Pia Rune Siri Tore Unn Vegard Astrid Bjorn Dagny Eirik Frida Geir Hilde Ivar Jorunn Knut Liv""".split()
CITIES = """Oslo Bergen Paris Rome Madrid Lisbon Berlin Vienna Prague Warsaw Dublin London Cairo Lagos Nairobi Tokyo
Osaka Seoul Delhi Mumbai Lima Quito Bogota Havana Boston Denver Austin Dallas Seattle Toronto Montreal Sydney Perth
Auckland Hobart Malmo Aarhus Turku Tampere Riga Tallinn Vilnius Krakow Gdansk Porto Seville Valencia Naples Milan
Turin Lyon Nice Geneva Zurich Basel Munich Hamburg Leipzig Dresden Bremen Utrecht Ghent Bruges Antwerp Cork Galway
Leeds York Bath Cardiff Glasgow Dundee Reno Tucson Omaha Tulsa Miami Atlanta Chicago Detroit Denver Helsinki
Stockholm Copenhagen Reykjavik Athens Sofia Bucharest Zagreb Split Belgrade Ankara Izmir Baku Tbilisi Yerevan Minsk
Kyiv Odesa Lviv Hanoi Manila Jakarta Bangkok Dhaka Lahore Kabul Doha Dubai Muscat Amman Beirut Tunis Algiers Rabat
Dakar Accra Kampala Harare Lusaka Luanda Windhoek Durban Santiago Mendoza Recife Natal Belem Manaus""".split()
COLORS = """red blue green yellow black white orange purple pink brown grey silver golden violet teal cyan olive navy
maroon beige ivory amber crimson indigo""".split()
OBJECTS = """box door safe locker chest gate bag case drawer cabinet vault trunk crate suitcase briefcase toolbox
mailbox shed garage cellar attic tent wagon boat bike car van truck kiosk cupboard jar""".split()
ANIMALS = "cat dog horse rabbit parrot hamster goat turtle pony duck goose lizard snake ferret mouse".split()
PET_NAMES = """Biscuit Pepper Muffin Ziggy Coco Luna Shadow Rocky Daisy Bubbles Pickles Noodle Waffles Gizmo Mango
Pumpkin Peanut Sunny Maple Toffee Clover Ginger Jasper Olive Pippin Rusty Smokey Sparky Tango Willow Nacho Dumpling
Fudge Kiwi Oreo Pebble Socks Tiger Bear Buddy Chester Domino Echo Frodo Goose Hopper Indy Juno Koda Lucky
Milo""".split()
THINGS = {
    "fruit": "apple banana mango cherry peach plum pear grape lemon lime melon kiwi papaya fig apricot guava".split(),
    "color": COLORS,
    "sport": "tennis football rugby hockey cricket golf rowing skiing boxing cycling swimming climbing".split(),
    "drink": "tea coffee cocoa milk lemonade juice cider water soda kefir".split(),
    "book": "Dune Emma Ulysses Beloved Ivanhoe Walden Hamlet Macbeth Persuasion Middlemarch Rebecca Matilda".split(),
    "song": "Yesterday Imagine Vogue Hurt Creep Jolene Roxanne Africa Hallelujah Wonderwall Zombie Heroes".split(),
    "flower": "rose tulip lily daisy orchid iris poppy lotus violet peony dahlia lilac".split(),
}
WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()


def _digits(rng, n):
    return "".join(str(rng.randrange(10)) for _ in range(n))


# Each fact kind: (key, statement, question, answer). The key makes facts unique inside one conversation.
def _fact_code(rng):
    color, obj, code = rng.choice(COLORS), rng.choice(OBJECTS), _digits(rng, 4)
    s = f"The code of the {color} {obj} is {code}."
    return ("code", color, obj), s, f"What is the code of the {color} {obj}?", s


def _fact_city(rng):
    name, city = rng.choice(NAMES), rng.choice(CITIES)
    s = f"{name} lives in {city}."
    return ("city", name), s, f"Where does {name} live?", s


def _fact_favorite(rng):
    name, kind = rng.choice(NAMES), rng.choice(sorted(THINGS))
    s = f"{name}'s favorite {kind} is {rng.choice(THINGS[kind])}."
    return ("fav", name, kind), s, f"What is {name}'s favorite {kind}?", s


def _fact_pet(rng):
    name, animal, pet = rng.choice(NAMES), rng.choice(ANIMALS), rng.choice(PET_NAMES)
    return (("pet", name, animal), f"{name} has a {animal} called {pet}.", f"What is the name of {name}'s {animal}?",
            f"{name}'s {animal} is called {pet}.")


def _fact_meeting(rng):
    name, day = rng.choice(NAMES), rng.choice(WEEKDAYS)
    time = f"{rng.randrange(7, 20)}:{rng.choice(['00', '15', '30', '45'])}"
    s = f"The meeting with {name} is on {day} at {time}."
    return ("meet", name), s, f"When is the meeting with {name}?", s


def _fact_phone(rng):
    name = rng.choice(NAMES)
    s = f"The phone number of {name} is {_digits(rng, 3)} {_digits(rng, 4)}."
    return ("phone", name), s, f"What is the phone number of {name}?", s


FACT_KINDS = [_fact_code, _fact_city, _fact_favorite, _fact_pet, _fact_meeting, _fact_phone]
STATE_PREFIXES = ["", "", "Please remember this: ", "Note that ", "A fact for you: ", "Keep in mind: "]
ACKS = ["Okay, I will remember that.", "Got it.", "Noted.", "Understood, I have noted it.",
        "Sure, I will keep that in mind.", "Thanks, I will remember."]


# ---- filler rounds --------------------------------------------------------------------------------------------------
SMALL_TALK = [
    ("Hello, how are you today?", ["I am fine, thank you. How can I help?", "Very well, thanks for asking."]),
    ("What a nice day it is.", ["It sounds lovely. Enjoy the sunshine.", "Yes, a nice day makes everything easier."]),
    ("I am a bit tired.", ["Maybe a short break and a glass of water would help.", "Rest is important. Take it easy."]),
    ("Thanks for your help.", ["You are welcome.", "Happy to help."]),
    ("Can you tell me a joke?", ["Why did the cat sit on the computer? To keep an eye on the mouse.",
                                 "I told my plant a joke. It did not laugh, but it grew on me."]),
    ("What should I cook tonight?", ["A simple pasta with tomatoes and basil is quick and tasty.",
                                     "How about a warm soup with fresh bread?"]),
    ("Any tips for sleeping better?", ["Keep a regular bedtime and avoid screens before sleep.",
                                       "A dark, cool room and no coffee late in the day help a lot."]),
    ("I like walking in the park.", ["Walking is great for body and mind.", "Parks are wonderful places to relax."]),
    ("Is it going to rain?", ["I cannot see the sky, but an umbrella never hurts.",
                              "I do not know the weather, so take a jacket just in case."]),
    ("Recommend a hobby.", ["Try drawing, it needs only a pencil and paper.", "Gardening is calm and rewarding."]),
]
STORY_HEROES = ["a small fox", "an old sailor", "a brave girl", "a lazy cat", "a young baker", "a tiny robot",
                "a curious boy", "a wise owl", "a happy dog", "a shy dragon"]
STORY_PLACES = ["in the forest", "by the sea", "in a quiet village", "on a high hill", "in a busy town",
                "under a bridge", "near the river", "in a snowy valley"]
STORY_EVENTS = ["found a shiny key", "lost a red hat", "met a new friend", "baked a big cake", "saw a falling star",
                "built a little boat", "heard a strange song", "planted a tree"]
STORY_ENDS = ["and everyone smiled.", "and it was a happy day.", "and then went home to sleep.",
              "and learned something new.", "and laughed all evening."]


def filler_round(rng):
    kind = rng.randrange(5)
    if kind == 0:
        user, answers = rng.choice(SMALL_TALK)
        return user, rng.choice(answers)
    if kind == 1:
        a, b = rng.randrange(1, 100), rng.randrange(1, 100)
        if rng.random() < 0.5:
            return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}."
        a, b = max(a, b), min(a, b)
        return f"What is {a} minus {b}?", f"{a} minus {b} is {a - b}."
    if kind == 2:
        a, b = rng.randrange(2, 13), rng.randrange(2, 13)
        return f"What is {a} times {b}?", f"{a} times {b} is {a * b}."
    if kind == 3:
        hero = rng.choice(STORY_HEROES)
        return ("Tell me a very short story.",
                f"Once {hero} {rng.choice(STORY_PLACES)} {rng.choice(STORY_EVENTS)} {rng.choice(STORY_ENDS)}")
    word = rng.choice(["apple", "river", "garden", "window", "planet", "music", "winter", "candle"])
    return f"How do you spell {word}?", f"{word} is spelled {' '.join(word.upper())}."


SYSTEMS = ["You are a helpful assistant. Remember what the user tells you.",
           "You are a friendly assistant with a good memory.",
           "You are an assistant. Answer questions about earlier messages exactly."]


# ---- conversations --------------------------------------------------------------------------------------------------
class Conversation:
    """Builds rounds one by one; questions only ask about facts stated earlier in the same conversation."""

    def __init__(self, rng):
        self.rng = rng
        self.system = rng.choice(SYSTEMS)
        self.rounds = []  # (user, assistant)
        self.facts = []   # (round index (1-based), fact)
        self.keys = set()

    def new_fact(self):
        for _ in range(20):
            fact = self.rng.choice(FACT_KINDS)(self.rng)
            if fact[0] not in self.keys:
                self.keys.add(fact[0])
                return fact
        return None

    # Each add_* appends one round and returns its kind: "fact", "filler" or "question".
    def add_fact(self):
        fact = self.new_fact()
        if fact is None:
            return self.add_filler()
        user = self.rng.choice(STATE_PREFIXES) + fact[1]
        self.rounds.append((user, self.rng.choice(ACKS)))
        self.facts.append((len(self.rounds), fact))
        return "fact"

    def add_filler(self):
        self.rounds.append(filler_round(self.rng))
        return "filler"

    def add_question(self):
        if not self.facts:
            return self.add_fact()
        _, fact = self.rng.choice(self.facts)
        self.rounds.append((fact[2], fact[3]))
        return "question"

    def add_random(self):
        r = self.rng.random()
        if r < 0.3:
            return self.add_fact()
        if r < 0.6:
            return self.add_filler()
        return self.add_question()

    def messages(self):
        out = [{"role": "system", "content": self.system}]
        for user, assistant in self.rounds:
            out += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
        return out


def heldout_case(seed, depth):
    """One evaluation conversation: the question is round `depth`, its fact stated at a uniform round in
    [1, depth - 1]; the other rounds are drawn as in training (other facts, fillers, other questions)."""
    rng = random.Random(seed)
    conv = Conversation(rng)
    target_round = rng.randrange(1, depth)
    target = None
    while len(conv.rounds) < depth - 1:
        if len(conv.rounds) + 1 == target_round:
            target = conv.new_fact()
            conv.rounds.append((rng.choice(STATE_PREFIXES) + target[1], rng.choice(ACKS)))
        else:
            conv.add_random()
    return {"depth": depth, "system": conv.system,
            "rounds": [{"user": u, "assistant": a} for u, a in conv.rounds],
            "question": target[2], "answer": target[3], "fact_round": target_round}


# ---- tokenizer ------------------------------------------------------------------------------------------------------
def train_tokenizer(out_dir, seed, vocab_size):
    """Trains a SentencePiece BPE model on message contents; returns its path. The normalizer is the identity with
    no whitespace folding and no dummy prefix, as the engine's tokenizer rebuilds it from the GGUF."""
    import sentencepiece as spm
    rng = random.Random(seed)
    path = os.path.join(out_dir, "tok_corpus.txt")
    with open(path, "w") as f:
        for _ in range(3000):
            conv = Conversation(rng)
            for _ in range(rng.randrange(10, 40)):
                conv.add_random()
            for m in conv.messages():
                f.write(m["content"] + "\n")
        # Every entity once in isolation, so that rare names still get pieces of their own where BPE likes.
        for word in NAMES + CITIES + PET_NAMES:
            f.write(f"{word} {word}.\n")
    prefix = os.path.join(out_dir, "recall_tok")
    spm.SentencePieceTrainer.train(
        input=path, model_prefix=prefix, model_type="bpe", vocab_size=vocab_size, character_coverage=1.0,
        byte_fallback=True, split_digits=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
        add_dummy_prefix=False, unk_id=0, bos_id=1, eos_id=2, pad_id=-1, unk_piece="<unk>", bos_piece="<s>",
        eos_piece=END_TOKEN, control_symbols=[SYSTEM_TOKEN, USER_TOKEN, ASSISTANT_TOKEN], num_threads=8,
        seed_sentencepiece_size=100000, minloglevel=2)
    os.remove(path)
    return prefix + ".model"


class Encoder:
    """Token ids of a rendered conversation, as the engine's tokenizer produces them (BOS, then each special token
    as its id and each content encoded on its own)."""

    def __init__(self, model_path):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_file=model_path)
        self.bos = self.sp.bos_id()
        self.end = self.sp.piece_to_id(END_TOKEN)
        self.role = {r: self.sp.piece_to_id(t) for r, t in ROLE_TOKENS.items()}

    def message(self, role, content):
        """Ids of one message: role token, content, end-of-turn token."""
        return [self.role[role]] + self.sp.encode(content) + [self.end]

    def conversation(self, messages, add_generation_prompt=False):
        ids = [self.bos]
        for m in messages:
            ids += self.message(m["role"], m["content"])
        if add_generation_prompt:
            ids.append(self.role["assistant"])
        return ids


def training_sequence(encoder, rng, length, answer_weight):
    """One conversation cut to `length` tokens: (ids, loss weights of the predicted tokens). Question answers (and
    their end token) get `answer_weight`, every other token 1."""
    conv = Conversation(rng)
    ids = [encoder.bos] + encoder.message("system", conv.system)
    weights = [1.0] * len(ids)
    while len(ids) < length:
        is_question = conv.add_random() == "question"
        user, assistant = conv.rounds[-1]
        u = encoder.message("user", user)
        a = [encoder.role["assistant"]]
        body = encoder.sp.encode(assistant) + [encoder.end]
        ids += u + a + body
        weights += [1.0] * (len(u) + len(a)) + [answer_weight if is_question else 1.0] * len(body)
    # weights[i] is the weight of predicting ids[i]; targets are ids[1:].
    return ids[:length], weights[1:length]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer-seed", type=int, default=1)
    ap.add_argument("--heldout-seed", type=int, default=1_000_003)
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--cases", type=int, default=100)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    model = train_tokenizer(args.out, args.tokenizer_seed, args.vocab)
    print(f"tokenizer: {model}", flush=True)
    for depth in (10, 30, 60):
        path = os.path.join(args.out, f"heldout_d{depth}.jsonl")
        with open(path, "w") as f:
            for i in range(args.cases):
                f.write(json.dumps(heldout_case(args.heldout_seed + depth * 100_000 + i, depth)) + "\n")
        print(f"wrote {path}", flush=True)


if __name__ == "__main__":
    main()
