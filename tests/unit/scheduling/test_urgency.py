"""The urgent-symptom detector (``services.scheduling.urgency`` with each language's ``URGENCY`` lexicon):
every symptom concept in English, Spanish and mixed messages, written as patients and carers write
them, and the guards that keep ordinary messages out (negation, "if", past, resolved, idioms, tests)."""
from __future__ import annotations

import pytest

from services.scheduling import intents, urgency
from services.scheduling.lang import LANGUAGES, en, es

#: concept -> (language, message): each one must be found as that concept.
POSITIVE = {
    "chest": [("en", "my chest is really tight tonight"), ("en", "pressure in my chest when I lie down"),
              ("en", "cp since this morning"), ("es", "mi papá tiene opresión en el pecho"),
              ("es", "me duele el pecho al caminar"), ("es", "siento un peso en el pecho")],
    "breathing": [("en", "I get winded walking to the mailbox now"), ("en", "my husband is struggling to breathe"),
                  ("en", "I can hardly breathe"), ("en", "he's breathing really hard and his lips are bluish"),
                  ("es", "le cuesta respirar a mi mamá"), ("es", "me ahogo cuando subo la escalera"),
                  ("es", "apenas puedo respirar"), ("es", "tiene los labios azules")],
    "bleeding": [("en", "blood when I wipe"), ("en", "I'm spitting up blood"), ("en", "I've vomited blood twice"),
                 ("en", "my stool looks black"), ("es", "sangre al limpiarme desde hace dos días"),
                 ("es", "escupí sangre esta mañana"), ("es", "mis popos salen negras"), ("es", "vomité algo como café molido")],
    "syncope": [("en", "I keep feeling faint"), ("en", "he collapsed in the garden"), ("es", "mi esposa se desmayó"),
                ("es", "perdió el conocimiento un momento")],
    "dizziness": [("en", "extremely dizzy and fell twice"), ("en", "the room keeps spinning"), ("es", "estoy muy mareada"),
                  ("es", "todo me da vueltas")],
    "confusion": [("en", "she's disoriented and doesn't know where she is"), ("en", "I feel really confused today"),
                  ("en", "he's really sleepy and hard to wake up"), ("es", "mi mamá no me reconoce"),
                  ("es", "está desorientado")],
    "seizure": [("en", "he had a convulsion"), ("en", "my wife was shaking all over on the floor"),
                ("es", "tuvo convulsiones anoche"), ("es", "se puso a temblar en el suelo")],
    "skin": [("en", "big blisters on my feet"), ("en", "my lips are swelling up"), ("en", "sores all over my mouth, can't eat"),
             ("es", "tengo ampollas en las manos"), ("es", "se me está pelando la piel de las manos"),
             ("es", "se me hinchó la cara")],
    "jaundice": [("en", "the whites of my eyes are yellow"), ("en", "my urine is the color of cola"),
                 ("es", "tengo los ojos amarillentos"), ("es", "la piel se ve amarilla")],
    "fever": [("en", "fever 38.2"), ("en", "temp is 102 tonight"), ("en", "fever and chills all night"),
              ("en", "38.3 fever this morning"), ("es", "tengo 39 de fiebre"), ("es", "fiebre de 38,5"),
              ("es", "fiebre alta desde ayer"), ("es", "calentura con escalofríos"), ("en", "my son has a fever"),
              ("es", "tengo fiebre desde ayer")],
    "diarrhoea": [("en", "10 watery stools today"), ("en", "diarrhea every hour since this morning"),
                  ("en", "I can't get off the toilet"), ("en", "diarrhea 6x today"), ("es", "tengo diarrea 10 veces hoy"), ("es", "diarrea toda la noche"),
                  ("es", "no puedo salir del baño")],
    "abdominal": [("en", "my stomach hurts so much"), ("en", "stomach cramps are unbearable"),
                  ("es", "dolor de estómago muy fuerte"), ("es", "el dolor de panza es insoportable")],
    "vomiting": [("en", "I've been throwing up all day"), ("en", "can't keep any water down"),
                 ("es", "vomitando toda la noche"), ("es", "no paro de vomitar"), ("en", "throwing up since last night"),
                 ("es", "sigo vomitando")],
    "headache_vision": [("en", "the worst headache I've ever had"), ("en", "blurry vision since this morning"),
                        ("en", "I can't see out of my right eye"), ("es", "dolor de cabeza insoportable"),
                        ("es", "lo veo todo nublado"), ("es", "perdí la vista de un ojo")],
    "stroke_weakness": [("en", "my face is drooping on the left"), ("en", "numbness on the left side of my face"),
                        ("en", "my legs feel so weak I can't climb the stairs"),
                        ("es", "se me durmió el brazo izquierdo de repente"), ("es", "tiene la cara torcida"),
                        ("es", "no puedo mover la pierna derecha")],
    "urine": [("en", "I haven't peed all day"), ("en", "barely any urine since yesterday"),
              ("en", "always thirsty and peeing constantly"), ("es", "no he orinado en todo el día"), ("es", "casi no orino")],
    "heart": [("en", "my heart is pounding"), ("en", "heart rate 140"), ("es", "tengo el corazón acelerado"),
              ("es", "taquicardia desde anoche")],
    "suicidal": [("en", "I want to die"), ("en", "I'm thinking about hurting myself"), ("es", "quiero morirme"),
                 ("es", "he pensado en quitarme la vida")],
    "severe_pain": [("en", "the pain in my back is unbearable"), ("en", "I'm in so much pain, tylenol isn't helping"),
                    ("en", "my knee pain is 9/10"), ("es", "tengo un dolor insoportable en la pierna"),
                    ("es", "me duele muchísimo la espalda"), ("es", "el paracetamol no me hace nada para el dolor")],
    "worsening": [("en", "my rash is getting worse"), ("en", "the cough is not getting better"), ("en", "a new rash on my arms"),
                  ("es", "la tos está cada vez peor"), ("es", "me salió un sarpullido nuevo"), ("es", "el dolor no se me quita")],
    "very_unwell": [("en", "I feel awful"), ("en", "I'm really sick"), ("en", "not normal tired, sleeping like 18 hours"),
                    ("es", "me siento muy mal"), ("es", "estoy fatal")],
}

#: a carer writing about the patient, or a message switching language: still urgent.
CARERS_AND_MIXED = ["my wife can't breathe", "mi esposo tiene dolor de pecho", "my son fainted",
                    "mi hija tiene 39.5 de fiebre", "tengo fever de 39", "my chest me duele mucho",
                    "mi papá can't breathe bien", "I'm not sure what's happening my chest hurts bad",
                    "no aguanto el dolor de pecho", "If I walk even a little I can't breathe",
                    "si camino un poco me falta el aire", "probably nothing, but I passed out for a second",
                    "fever of 39.2 last night, came down with tylenol, feel ok now",
                    "Can I move to Friday? Also there was blood in the toilet after I went."]

#: lay and indirect wording of the same concepts.
LAY_WORDING = ["I feel like an elephant is sitting on my chest", "can't lie flat, I need 3 pillows to breathe",
               "my breathing is bad today", "respiro con dificultad", "rectal bleeding", "nosebleed that won't stop for an hour",
               "me mareé y me caí", "I feel so woozy I can't stand", "she's not herself, talking nonsense",
               "tuvo un ataque y se sacudía", "my stomach is killing me", "no he ido a orinar en todo el día",
               "siento que el corazón se me sale", "I've thought about ending it", "quisiera no despertar",
               "running a fever of 38.5", "diarrea con cólicos 7 veces", "throwing up everything I eat",
               "orino muy poquito y oscuro", "le tiembla todo el cuerpo y no contesta", "me siento débil, no puedo ni caminar",
               "my smile is crooked all of a sudden", "se me hincharon los labios y la lengua", "me sale sangre cuando hago popó",
               "mi esposo se cayó y no responde", "he's gray and sweaty and says his chest hurts", "tummy pain 10/10"]

#: messages of patients who are well, or stable and known, or asking about admin: not urgent.
ORDINARY = ["mild nausea in the morning, same as before, meds help", "joint aches same as last visit",
            "I have a cold, sniffles, no fever", "tengo un poco de tos, nada más, ¿la cita sigue?", "un poco cansada, lo de siempre",
            "the diarrhea is much better, just 1-2 times a day", "my heart rate was 72 on my watch",
            "I'm going to the ER for my mom, not me, can we reschedule", "the CT of my chest is scheduled for Tuesday",
            "my stomach is growling, is there a cafeteria?", "sin dolor, sin fiebre, todo bien", "who do I talk to about billing?",
            "me duele un poco la rodilla como siempre, nada nuevo", "my back hurts a little from gardening, same as always",
            "the wait was terrible last time", "my daughter had a fever last week, she's fine now", "8 am on the 6th please",
            "¿el análisis de orina es el mismo día?", "stool sample drop off, where?", "la tos se me quitó"]

#: guard -> messages that name a symptom and are not urgent.
NEGATIVE = {
    "negation": ["no fever, no chills, all good", "I have no chest pain at all", "I don't have any blisters or peeling",
                 "sin dolor de pecho, gracias", "no tengo fiebre ni escalofríos", "No me he desmayado, solo pregunto por la cita",
                 "no chest pain ni nada, just the time please", "no tengo fiebre", "I don't have a fever",
                 "no me duele el pecho"],
    "hypothetical": ["what should I do if I get a fever?", "¿qué hago si me da fiebre?",
                     "how many times of diarrhea is too many?", "what do I do if I have a fever?", "what should I do if I have chest pain in the future?"],
    "past": ["I fainted years ago when I was a kid, just so you know", "the fever I had last month is gone",
             "la fiebre que tuve hace dos semanas ya se me quitó", "the diarrhoea from last month, 8 times a day, is long over"],
    "resolved": ["the rash with blisters went away last week", "el sarpullido con ampollas ya se me quitó",
                 "my terrible headache is gone now", "ya no tengo diarrea toda la noche, ¿puedo ir el jueves?"],
    "low_grade": ["I have a low grade fever, is that ok for Tuesday?"],
    "idiom": ["this traffic is killing me", "I'm dying to know the results", "that view took my breath away",
              "my heart sank when I saw the bill", "these forms are a pain in the neck", "estos trámites me dan dolor de cabeza",
              "me muero de ganas de terminar", "I almost had a heart attack when I saw the bill haha",
              "I feel terrible about cancelling again", "me siento mal por cancelar otra vez", "I'm sick of these phone menus",
              "the bloody website won't load", "I'm a bit confused about the time, is it 3 or 4?",
              "The waiting room was so crowded I couldn't breathe lol, can I wait outside?",
              "got lost finding the clinic last time, where do I park?", "no veo la hora de terminar"],
    "test_or_reading": ["my blood work is due Tuesday", "blood pressure 118/76 this morning",
                        "can I get my blood drawn at the visit?", "¿me pueden sacar sangre el mismo día?",
                        "los análisis de sangre salieron bien", "my husband's blood test is on Friday",
                        "¿hay que estar en ayunas para el análisis de sangre?"],
    "scheduling": ["tomorrow at 8:30 is fine", "can I move my 10 o'clock to 11?", "¿a las 10 de la mañana?",
                   "I'll come at 9, my daughter will drive", "I can't see my appointment in the app",
                   "can I get up early for a 7am slot?"],
}


@pytest.mark.parametrize("concept, language, text",
                         [(c, lang, t) for c, examples in POSITIVE.items() for lang, t in examples])
def test_each_concept_is_found(concept, language, text):
    found = intents.urgent_findings(text)
    assert concept in {f.concept for f in found}, found
    assert intents.read(text, ("en",)).urgent and intents.read(text, ("es",)).urgent   # whatever the tenant declared


def test_every_concept_of_both_lexicons_has_examples_in_both_languages():
    for code in ("en", "es"):
        concepts = set(LANGUAGES[code].urgency.concepts)
        assert concepts == set(POSITIVE), code
        tested = {c for c, examples in POSITIVE.items() for lang, _ in examples if lang == code}
        assert tested == concepts, code


@pytest.mark.parametrize("text", CARERS_AND_MIXED)
def test_carers_mixed_language_and_played_down_messages_are_urgent(text):
    assert intents.urgent(text)


@pytest.mark.parametrize("text", LAY_WORDING)
def test_lay_and_indirect_wording_is_urgent(text):
    assert intents.urgent(text)


@pytest.mark.parametrize("text", ORDINARY)
def test_ordinary_messages_of_well_or_stable_patients_are_not_urgent(text):
    assert not intents.urgent(text), intents.urgent_findings(text)


@pytest.mark.parametrize("guard, text", [(g, t) for g, texts in NEGATIVE.items() for t in texts])
def test_guards_keep_ordinary_messages_out(guard, text):
    assert not intents.urgent(text), intents.urgent_findings(text)


def test_lasting_symptoms_stay_urgent_when_they_passed():
    # a faint, a seizure, one-sided weakness or blood is urgent even once it is over; a rash that cleared is not
    assert intents.urgent("my left arm went numb for 20 minutes, it went away")
    assert intents.urgent("I fainted this morning but I'm fine now")
    assert not intents.urgent("the blisters went away with the cream")


@pytest.mark.parametrize("text", [
    "had a siezure", "vommiting blood", "diahrea 10 times", "chesst pain", "so dizzzy", "my eyes r yelow", "stomache pain 9/10",
    "fevr 39", "passd out in the shower", "bomite sangre", "muy mariado", "me desmalle", "tuvo una convulcion",
    "tengo los ojos amariyos", "diarea 9 veces", "dolor d pecho", "no puedo respirrar", "me estoy ahogando", "tengo 39",
])
def test_misspellings_and_texting_spellings(text):
    assert intents.urgent(text)


def test_guards_of_either_language_read_a_mixed_message():
    assert not intents.urgent("la diarrea from last month, 8 veces al día, is gone")
    assert not intents.urgent("tengo 39 años y quiero cambiar la cita")
    assert intents.urgent("no aguanto el dolor de pecho")           # English "no" is not a Spanish negation


@pytest.mark.parametrize("text, expected", [
    ("fever 100.2", False), ("fever 100.4", True), ("temp 37.5", False), ("101 fever", True), ("tengo 38,5", True),
    ("can I come at 3:39?", False), ("I am 38 years old", False), ("40 minutes late sorry", False),
    ("tengo 40 minutos de retraso", False), ("room 101 or 102?", False),
])
def test_fever_is_a_number_over_the_threshold_next_to_a_fever_word(text, expected):
    assert intents.urgent(text) is expected


def test_a_symptom_going_on_since_a_past_date_is_not_past():
    assert intents.urgent("diarrhea 8 times a day since last month")
    assert intents.urgent("desde hace dos meses tengo diarrea 8 veces al día")
    assert intents.urgent("tengo fiebre de 39 desde el 2 de diciembre")
    assert not intents.urgent("la diarrea de octubre, 8 veces al día, ya pasó")


def test_the_guard_is_per_clause():
    assert not intents.urgent("no chest pain")
    assert intents.urgent("no fever, but my chest hurts")
    assert intents.urgent("sin fiebre pero me duele el pecho")


def test_a_lexicon_naming_a_lasting_concept_it_lacks_is_refused():
    table = dict(en.URGENCY, lasting=["chest", "no-such-concept"])
    with pytest.raises(ValueError, match="no-such-concept"):
        urgency.compile_lexicon("en", table)
    assert urgency.compile_lexicon("es", es.URGENCY).code == "es"


@pytest.mark.parametrize("text", [
    "cant catch my breth", "sooo dizzzy i fell", "im so confuzed, where am i", "bleeeding from my bum", "my vission is blury",
    "sob all day", "I keep forgetting where I am for a second", "my husband doesnt know what year it is",
    "unconcious for a minute", "palpatations all night", "no puedo respirrar", "tengo muxo dolor de pecho",
    "mi mamá no está hablando con sentido hoy", "se le olvida dónde está",
])
def test_misspelt_and_texting_words_are_corrected_to_symptoms(text):
    assert intents.urgent(text), intents.urgent_findings(text)


@pytest.mark.parametrize("word", ["sharing", "spelling", "formatting", "confusing", "acting", "dropping", "peering",
                                  "stores", "rating", "blessing"])
def test_ordinary_words_near_a_symptom_word_are_not_corrected(word):
    from services.scheduling.lang import LANGUAGES
    lexicon = LANGUAGES["en"].urgency
    known = frozenset().union(*(spec.urgency.known for spec in LANGUAGES.values()))
    assert urgency._fix_word(lexicon, known, word) == word


@pytest.mark.parametrize("text", ["my hand is swollen", "tengo tos", "I have a headache", "me pica todo el cuerpo",
                                  "my feet are tingling"])
def test_a_symptom_in_a_message_about_nothing_else_is_reported(text):
    assert {f.concept for f in intents.urgent_findings(text)} == {"symptom_report"}


@pytest.mark.parametrize("text", ["I have a headache, can I still come Tuesday?", "a little sore after the infusion",
                                  "tengo un poco de tos", "my hand was swollen last year", "headache is gone now",
                                  "tengo tos, ¿la cita sigue en pie?", "my knee aches same as always",
                                  "I forgot where the clinic is", "what side effects should I watch for?"])
def test_a_symptom_with_scheduling_mild_past_or_stable_is_not_reported(text):
    assert not intents.urgent(text), intents.urgent_findings(text)


@pytest.mark.parametrize("text", ["my chest pain is the same as always", "still short of breath as usual"])
def test_stable_does_not_cancel_a_lasting_symptom(text):
    assert intents.urgent(text)
