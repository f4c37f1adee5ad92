/* fable — the built-in story generator (see include/fable/storygen.h).
 *
 * A story is one of a few plots (a lost toy, sharing, a fear, a new friend, helping,
 * making something, a warning not heeded), told in paragraphs. Each paragraph is a
 * template in a tiny language:
 *   {a|b|c}  one alternative, chosen uniformly (alternatives may nest and hold slots)
 *   {NAME}   a slot: a per-story choice (hero N, friend F, place L, object X, ...) or, for
 *            lower-case names, a fresh pick from a word list on every use ({adj}, {good}...)
 * After expansion a pass capitalises sentence starts and turns "a" into "an" before a
 * vowel, so the templates need not care.
 */
#include "fable/storygen.h"

#include <stdlib.h>
#include <string.h>

#include "fable/util.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* ---- words ------------------------------------------------------------------------- */
static const char *girls[] = {"Lily", "Mia", "Sue", "Anna", "Emma", "Lucy", "Zoe", "Ella", "Rosa", "Nina",
                              "Maya", "Amy", "Kim", "Jen", "Sara", "Ruby", "Ivy", "Daisy", "Hana", "Leah"};
static const char *boys[] = {"Tom", "Ben", "Max", "Sam", "Tim", "Leo", "Jack", "Finn", "Noah", "Joe",
                             "Bob", "Dan", "Eli", "Ravi", "Omar", "Theo", "Kai", "Luke", "Ned", "Oscar"};
static const char *pets[] = {"Spot", "Whiskers", "Fluffy", "Pip", "Coco", "Benny", "Rex", "Buzz",
                             "Patch", "Nibbles", "Sunny", "Bubbles", "Pepper", "Button", "Ziggy", "Momo"};
static const char *animals[] = {"cat", "dog", "puppy", "bunny", "bear", "duck", "frog", "fox", "mouse",
                                "bird", "turtle", "squirrel", "pig", "kitten", "lamb", "owl", "hedgehog"};
static const char *places[] = {"park", "forest", "beach", "garden", "farm", "pond", "meadow", "zoo",
                               "backyard", "hill", "river", "playground", "market", "library", "woods"};
static const char *objects[] = {"ball", "kite", "doll", "teddy bear", "toy car", "toy truck", "hat", "book",
                                "shell", "balloon", "drum", "boat", "blanket", "cup", "ring", "bell",
                                "puzzle", "robot", "train", "box", "scarf", "whistle", "crayon", "spoon"};
static const char *colors[] = {"red", "blue", "green", "yellow", "pink", "purple", "orange", "white"};
static const char *adjs[] = {"shiny", "big", "little", "soft", "old", "new", "striped", "sparkly",
                             "tiny", "round", "fluffy", "bright", "funny", "pretty", "special"};
static const char *goods[] = {"happy", "glad", "proud", "excited", "cheerful", "thankful", "joyful"};
static const char *bads[] = {"sad", "upset", "worried", "grumpy", "cross", "gloomy"};
static const char *helpers[] = {"mom", "dad", "grandma", "grandpa", "big sister", "big brother", "teacher", "aunt"};
static const char *scary[] = {"the dark", "the loud thunder", "the big dog next door", "the deep water",
                              "the tall slide", "the strange noise in the attic", "the buzzing bees",
                              "the long dark tunnel"};
static const char *foods[] = {"cookies", "apples", "cake", "soup", "pie", "sandwiches", "berries",
                              "carrots", "ice cream", "pancakes", "warm bread", "cheese", "grapes"};
static const char *games[] = {"tag", "hide and seek", "catch", "pirates", "house", "tea party", "jump rope"};
static const char *makes[] = {"a sand castle", "a tower of blocks", "a cake", "a picture", "a paper boat",
                              "a snowman", "a birdhouse", "a fort of pillows", "a necklace of beads"};
static const char *trouble[] = {"a little bird stuck in a tree", "a kitten crying in the rain",
                                "an old man who had dropped his apples", "a duckling that could not find its mom",
                                "a lost puppy shaking by the road", "a ladybug on its back"};
static const char *weather[] = {"sunny", "windy", "cloudy", "warm", "cold", "bright", "rainy"};
static const char *verbs[] = {"run", "jump", "sing", "dance", "draw", "read", "climb", "swim", "skip", "paint"};

typedef struct {
    const char *name;
    const char **list;
    size_t n;
} word_list;

static const word_list lists[] = {
    {"adj", adjs, COUNT(adjs)},       {"color", colors, COUNT(colors)},     {"good", goods, COUNT(goods)},
    {"bad", bads, COUNT(bads)},       {"food", foods, COUNT(foods)},        {"game", games, COUNT(games)},
    {"verb", verbs, COUNT(verbs)},    {"animal", animals, COUNT(animals)},  {"place", places, COUNT(places)},
    {"weather", weather, COUNT(weather)},
};

/* ---- plots ---------------------------------------------------------------------------
 * Slots: N hero, K hero kind, P/Pp/Po he-his-him; F friend, FK, FP/FPp/FPo; H helper,
 * HP/HPp; L place; X object (with an adjective); Xn object noun; S scary thing;
 * T food; G game; B thing to make; Q one in trouble. */
static const char *opening[] = {
    "{Once upon a time|One day|Once|Long ago|One {weather} morning}, there was a {K} named {N}. "
    "{{N} loved to {verb} and {verb}.|{N} had a {X} that {P} loved very much.|{P} lived in a {little|small|cozy} "
    "house near the {L}.|Every day, {N} liked to play in the {L}.}",
    "{N} was a {little|young|kind|curious|happy} {K}. {P} {liked|loved} {to {verb}|the {L}|{food}|playing {game}} "
    "{more than anything|very much|a lot}.",
    "There was a {K} called {N}. {N} had a friend named {F}. {They played together every "
    "day.|They liked to {verb} together.}",
};

static const char *lost[] = {
    "One {weather} day, {N} took {Pp} {X} to the {L}. {P} played with it {all morning|for a long time|with {F}}.",
    "{Then|But then|Suddenly}, {N} could not find the {Xn}! {N} looked {under the bench|behind the trees|everywhere|"
    "in the grass}, but it was gone. {N} felt very {bad}. \"Where is my {Xn}?\" {P} {cried|said|asked}.",
    "{{F}|{F} the {FK}} {came by|saw {Po}|heard {Po}}. \"{Don't be sad|Do not worry}, {N}. I will help you {look|find "
    "it},\" said {F}. They looked {high and low|by the {L}|behind every bush} together.",
    "{At last|After a while|Soon}, {F} {saw|found|spotted} something {Xa} under a {leaf|rock|bush|bench}. It was "
    "the {Xn}! {N} {hugged {F}|jumped up and down|smiled a big smile}. \"Thank you, {F}!\" {P} said. "
    "{From that day on, {N} and {F} were best friends.|{N} learned that friends help each other.|They played "
    "with the {Xn} until the sun went down.}",
};

static const char *sharing[] = {
    "One day, {N} and {F} {were playing|went to play} in the {L}. They {found|saw} a {X} {on the ground|by a "
    "tree|in a box}.",
    "\"It is mine!\" said {N}. \"No, I saw it first!\" said {F}. They both pulled the {Xn}. {N} felt {bad} and "
    "{F} felt {bad} too.",
    "{N}'s {H} {saw them|came over|heard them}. \"{Why don't you take turns?|You can share it.|It is more fun "
    "to play together.}\" {HP} said {kindly|with a smile|softly}.",
    "{So|Then} {N} and {F} took turns with the {Xn}. {First {N} played, then {F} played.|They played with it "
    "together.} {They had so much fun.|They laughed and laughed.} {N} learned that sharing {is good|makes "
    "everyone {good}|is fun}.",
};

static const char *fear[] = {
    "{N} was {scared|afraid} of {S}. {Every time|Whenever} {P} {thought about|saw|heard} {S}, {P} wanted to "
    "{hide|run away|cry}.",
    "One {day|night|evening}, {N} told {Pp} {H}, \"I am {scared|afraid} of {S}.\" {Pp} {H} {held {Po} "
    "close|smiled|gave {Po} a hug} and said, \"{It is okay to be scared.|You are braver than you think.|I "
    "will be right here with you.}\"",
    "{N} took a deep breath. {P} {looked at|walked up to|faced} {S} {one step at a time|slowly|with {Pp} "
    "{H}}. {It was not so bad!|Nothing bad happened.|It was not scary at all.}",
    "{N} felt {good} and brave. \"{I did it!|Look, I am not scared!|I was brave!}\" {P} said. {Pp} {H} was "
    "proud of {Po}. {Now|After that}, {N} {was not afraid of {S} anymore|helped other kids be brave too}.",
};

static const char *friendship[] = {
    "{N} went to the {L} {alone|by {Po}self|with {Pp} {H}}. {P} felt {lonely|a little sad} because {P} had no "
    "one to play with.",
    "Then {N} saw a {FK} {sitting|standing|playing} {by a tree|near the water|on a bench}. \"Hello,\" said {N}. "
    "\"My name is {N}. What is your name?\" \"I am {F},\" said the {FK}.",
    "\"Do you want to play {G}?\" asked {N}. \"{Yes|Yes, please|Okay}!\" said {F}. They played {G} and "
    "{shared|ate} {food} {under a tree|on the grass|by the {L}}.",
    "When it was time to go home, {N} and {F} {hugged|waved goodbye}. \"Can we play again tomorrow?\" asked "
    "{F}. \"Yes!\" said {N}. {N} was not lonely anymore. {P} had a new friend.",
};

static const char *helping[] = {
    "One {weather} day, {N} was walking {to the {L}|home|with {Pp} {H}} when {P} saw {Q}.",
    "\"{Oh no|Look|Poor thing}!\" said {N}. {P} {wanted to help|knew what to do|thought for a moment}. {N} "
    "{went closer|called {Pp} {H}|got down low} and {was very gentle|spoke softly|moved slowly}.",
    "{With some help|After a little while|Step by step}, {N} {made everything right|helped|fixed the "
    "problem}. {Everyone|The little one} was safe and {good} again.",
    "\"Thank you, {N}! You are so kind,\" {they said|said {Pp} {H}}. {N} felt warm and {good} inside. {Helping "
    "others felt good.|{N} smiled all the way home.}",
};

static const char *making[] = {
    "{N} wanted to make {B}. {P} {got everything ready|found all the things {P} needed|asked {F} to help}.",
    "But {the first try went wrong|it did not work at first|it fell down}. {N} felt {bad}. \"{Oh no!|This is "
    "too hard!|Why won't it work?}\" {P} said.",
    "{F} said, \"{Let's try again!|Don't give up.|We can do it together.}\" So they tried again, {more "
    "slowly|one step at a time|with more care}.",
    "{This time it worked!|At last, they made {B}!} It was {adj} and {adj}. {N} showed it to {Pp} {H}, who "
    "said, \"{Wow, it is beautiful!|Good job!|I am so proud of you!}\" {N} and {F} were very {good}.",
};

static const char *warning[] = {
    "{N}'s {H} said, \"Do not go near the {L} {alone|without me|today}. {It is not safe.|It is too far.}\" "
    "But {N} {wanted to see it|was curious|did not listen}.",
    "{N} went to the {L} {anyway|all alone}. {P} played with {Pp} {X}, but then {P} {slipped|got lost|dropped "
    "the {Xn} in the water}. {N} was {scared|sad} and {cried|called for help}.",
    "{Pp} {H} {came running|found {Po}|heard {Po}} and {helped {Po} up|took {Po} home|gave {Po} a big hug}. "
    "\"I am sorry,\" said {N}. \"I should have listened.\"",
    "{Pp} {H} said, \"{It is okay. I am glad you are safe.|Next time, please listen to me.}\" {N} learned "
    "to listen to {Pp} {H}. {They went home and ate {food}.|That night, {N} slept well.}",
};

typedef struct {
    const char **paras;
    size_t n;
} plot;

static const plot plots[] = {{lost, COUNT(lost)},           {sharing, COUNT(sharing)}, {fear, COUNT(fear)},
                             {friendship, COUNT(friendship)}, {helping, COUNT(helping)}, {making, COUNT(making)},
                             {warning, COUNT(warning)}};

/* ---- expansion ----------------------------------------------------------------------- */
typedef struct {
    const char *name;
    const char *val;
} slot;

typedef struct {
    fb_rng r;
    slot s[24];
    int ns;
    char *buf;
    size_t len, cap;
    int oom;
} gen;

static size_t pick(gen *g, size_t n) { return (size_t)(fb_rng_u32(&g->r) % (uint32_t)n); }

static void put(gen *g, const char *s, size_t n) {
    if (g->len + n + 1 > g->cap) {
        size_t cap = (g->len + n + 1) * 2;
        char *b = realloc(g->buf, cap);
        if (!b) {
            g->oom = 1;
            return;
        }
        g->buf = b;
        g->cap = cap;
    }
    memcpy(g->buf + g->len, s, n);
    g->len += n;
    g->buf[g->len] = 0;
}

static void set(gen *g, const char *name, const char *val) {
    g->s[g->ns].name = name;
    g->s[g->ns].val = val;
    g->ns++;
}

static void expand(gen *g, const char *s, size_t n, int depth);

/* Expand the inside of one {...}. */
static void expand_group(gen *g, const char *s, size_t n, int depth) {
    /* top-level '|' positions split the alternatives */
    size_t bars = 0, lvl = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '{') lvl++;
        else if (s[i] == '}') lvl--;
        else if (s[i] == '|' && lvl == 0) bars++;
    }
    if (bars) {
        size_t k = pick(g, bars + 1), start = 0, alt = 0;
        lvl = 0;
        for (size_t i = 0; i <= n; i++) {
            if (i < n && s[i] == '{') lvl++;
            else if (i < n && s[i] == '}') lvl--;
            else if (i == n || (s[i] == '|' && lvl == 0)) {
                if (alt++ == k) {
                    expand(g, s + start, i - start, depth + 1);
                    return;
                }
                start = i + 1;
            }
        }
        return;
    }
    for (int i = g->ns - 1; i >= 0; i--)
        if (strlen(g->s[i].name) == n && !memcmp(g->s[i].name, s, n)) {
            expand(g, g->s[i].val, strlen(g->s[i].val), depth + 1);
            return;
        }
    for (size_t i = 0; i < COUNT(lists); i++)
        if (strlen(lists[i].name) == n && !memcmp(lists[i].name, s, n)) {
            const char *w = lists[i].list[pick(g, lists[i].n)];
            put(g, w, strlen(w));
            return;
        }
    put(g, "{?", 2); /* an unknown slot shows up in the text (the tests look for '{') */
    put(g, s, n);
    put(g, "}", 1);
}

static void expand(gen *g, const char *s, size_t n, int depth) {
    if (depth > 16) return;
    for (size_t i = 0; i < n;) {
        if (s[i] != '{') {
            size_t j = i;
            while (j < n && s[j] != '{') j++;
            put(g, s + i, j - i);
            i = j;
            continue;
        }
        size_t lvl = 0, j = i;
        for (; j < n; j++) {
            if (s[j] == '{') lvl++;
            else if (s[j] == '}' && --lvl == 0) break;
        }
        expand_group(g, s + i + 1, j - i - 1, depth);
        i = j + 1;
    }
}

static int is_vowel(char c) { return c == 'a' || c == 'e' || c == 'i' || c == 'o' || c == 'u'; }
static int is_lower(char c) { return c >= 'a' && c <= 'z'; }

/* Capitalise sentence starts (the text start, after '.', '!', '?', a newline, an opening
 * quote, or `."`; not after `!"` `?"` `,"`: `"Thank you!" she said.`) and write "an"
 * before a vowel. */
static void polish(gen *g) {
    size_t cap = g->len + g->len / 2 + 16; /* "a" -> "an" adds at most one byte per 2 */
    char *out = malloc(cap);
    if (!out) {
        g->oom = 1;
        return;
    }
    size_t o = 0;
    int start = 1;
    for (size_t i = 0; i < g->len; i++) {
        char c = g->buf[i];
        int word_a = (c == 'a' || c == 'A') && (i == 0 || g->buf[i - 1] == ' ' || g->buf[i - 1] == '"') &&
                     i + 2 < g->len && g->buf[i + 1] == ' ' && is_vowel(g->buf[i + 2]);
        if (start && is_lower(c)) c = (char)(c - 'a' + 'A');
        out[o++] = c;
        if (word_a) out[o++] = 'n';
        if (c == '.' || c == '!' || c == '?' || c == '\n') start = 1;
        else if (c == '"') /* opening quote, or closing after a full stop: a new sentence follows */
            start = i == 0 || g->buf[i - 1] == ' ' || g->buf[i - 1] == '\n' || g->buf[i - 1] == '.';
        else if (c != ' ') start = 0;
    }
    out[o] = 0;
    free(g->buf);
    g->buf = out;
    g->len = o;
    g->cap = cap;
}

/* A character: name, kind and pronouns. Animals get pet names. */
static void character(gen *g, const char **name, const char **kind, int *she) {
    static const char *girl_kinds[] = {"little girl", "girl", "girl"}, *boy_kinds[] = {"little boy", "boy", "boy"};
    size_t r = pick(g, 10);
    if (r < 4) {
        *she = 1;
        *name = girls[pick(g, COUNT(girls))];
        *kind = girl_kinds[pick(g, 3)];
    } else if (r < 8) {
        *she = 0;
        *name = boys[pick(g, COUNT(boys))];
        *kind = boy_kinds[pick(g, 3)];
    } else {
        *she = (int)pick(g, 2);
        *name = pets[pick(g, COUNT(pets))];
        *kind = animals[pick(g, COUNT(animals))];
    }
}

static void story(gen *g, uint64_t seed, uint64_t index) {
    /* splitmix64 of (seed, index): stories are independent of each other and of n */
    uint64_t x = seed * 0x9E3779B97F4A7C15ULL + index + 1;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
    fb_rng_seed(&g->r, x ^ (x >> 31));
    g->ns = 0;
    g->len = 0;
    if (g->buf) g->buf[0] = 0;

    const char *hn, *hk, *fn, *fk;
    int hs, fs;
    character(g, &hn, &hk, &hs);
    do character(g, &fn, &fk, &fs);
    while (fn == hn);
    const char *obj = objects[pick(g, COUNT(objects))];
    const char *oadj = pick(g, 2) ? colors[pick(g, COUNT(colors))] : adjs[pick(g, COUNT(adjs))];
    const char *helper = helpers[pick(g, COUNT(helpers))];
    int helper_she = !strcmp(helper, "mom") || !strcmp(helper, "grandma") || !strcmp(helper, "big sister") ||
                     !strcmp(helper, "aunt") || (!strcmp(helper, "teacher") && pick(g, 2));
    set(g, "N", hn);
    set(g, "K", hk);
    set(g, "P", hs ? "she" : "he");
    set(g, "Pp", hs ? "her" : "his");
    set(g, "Po", hs ? "her" : "him");
    set(g, "F", fn);
    set(g, "FK", fk);
    set(g, "FP", fs ? "she" : "he");
    set(g, "FPp", fs ? "her" : "his");
    set(g, "FPo", fs ? "her" : "him");
    set(g, "H", helper);
    set(g, "HP", helper_she ? "she" : "he");
    set(g, "HPp", helper_she ? "her" : "his");
    set(g, "L", places[pick(g, COUNT(places))]);
    set(g, "Xn", obj);
    set(g, "X", "{Xa} {Xn}");
    set(g, "Xa", oadj);
    set(g, "S", scary[pick(g, COUNT(scary))]);
    set(g, "B", makes[pick(g, COUNT(makes))]);
    set(g, "Q", trouble[pick(g, COUNT(trouble))]);
    set(g, "G", games[pick(g, COUNT(games))]);

    const char *o = opening[pick(g, COUNT(opening))];
    expand(g, o, strlen(o), 0);
    const plot *p = &plots[pick(g, COUNT(plots))];
    for (size_t i = 0; i < p->n; i++) {
        /* paragraphs: "\n\n" most of the time, sometimes run on in one paragraph */
        if (pick(g, 4)) put(g, "\n\n", 2);
        else put(g, " ", 1);
        expand(g, p->paras[i], strlen(p->paras[i]), 0);
    }
    polish(g);
}

size_t storygen_story(uint64_t seed, uint64_t index, char *out, size_t cap) {
    gen g;
    memset(&g, 0, sizeof g);
    story(&g, seed, index);
    size_t n = g.oom ? 0 : g.len;
    if (cap) {
        size_t k = n < cap - 1 ? n : cap - 1;
        if (k) memcpy(out, g.buf, k);
        out[k] = 0;
    }
    free(g.buf);
    return n;
}

char *storygen_corpus(uint64_t seed, uint64_t first, size_t n, size_t *len) {
    static const char sep[] = "\n<|endoftext|>\n";
    gen g;
    memset(&g, 0, sizeof g);
    size_t cap = n * 1024 + 64, o = 0;
    char *out = malloc(cap);
    if (!out) {
        fb_err("storygen: out of memory");
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        story(&g, seed, first + i);
        if (g.oom) break;
        size_t need = o + g.len + sizeof sep;
        if (need > cap) {
            cap = need * 2;
            char *b = realloc(out, cap);
            if (!b) {
                g.oom = 1;
                break;
            }
            out = b;
        }
        memcpy(out + o, g.buf, g.len);
        o += g.len;
        memcpy(out + o, sep, sizeof sep - 1);
        o += sizeof sep - 1;
    }
    free(g.buf);
    if (g.oom) {
        free(out);
        fb_err("storygen: out of memory");
        return NULL;
    }
    out[o] = 0;
    *len = o;
    return out;
}

int storygen_write(const char *path, uint64_t seed, uint64_t first, size_t n) {
    size_t len;
    char *text = storygen_corpus(seed, first, n, &len);
    if (!text) return -1;
    int rc = fb_write_file_atomic(path, text, len);
    free(text);
    return rc;
}
