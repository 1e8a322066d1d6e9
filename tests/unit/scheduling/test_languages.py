"""The per-language pattern tables (``services.scheduling.lang``) as ``intents.read`` uses them:
urgent symptoms and requests for a person in English and Spanish, what counts as a yes, hedges,
undeclared languages, and the fixed texts (no text claims an action it does not render)."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from services.scheduling import dates, intents, lang, render
from services.scheduling.guard import claims_action

BOTH = ("en", "es")


def read(text: str, languages=BOTH) -> intents.Reading:
    return intents.read(text, languages)


@pytest.mark.parametrize("text", [
    "I have chest pain since this morning", "shortness of breath when I walk", "there is blood in my stool",
    "I fainted in the shower", "my rash has blisters now and the skin is peeling", "I feel confused",
    "Tengo dolor en el pecho y diarrea con sangre", "me falta el aire desde anoche", "no puedo respirar bien",
    "ayer me desmayé", "tengo ampollas en la piel", "estoy vomitando sangre", "tengo la piel amarilla",
])
def test_urgent_symptoms_in_both_languages(text):
    assert read(text).urgent
    assert read(text, ("en",)).urgent               # recognised even where the tenant declared English only


@pytest.mark.parametrize("text", [
    "I need to move my appointment", "Sí, por favor", "tengo una pregunta sobre el parking", "thank you!",
    "diarrhea twice yesterday, better now", "¿a qué hora es mi cita?",
])
def test_ordinary_messages_are_not_urgent(text):
    assert not read(text).urgent


@pytest.mark.parametrize("text", [
    "can I talk to a real person?", "can a nurse just call me instead?", "I want to speak with someone at the desk",
    "¿Me puede llamar una enfermera?", "quiero hablar con una persona por favor", "¿me puede llamar alguien de la clínica?",
])
def test_requests_for_a_person(text):
    assert read(text).staff


@pytest.mark.parametrize("text", ["yes", "yes please", "Sí, por favor", "sí", "si, reserve el primero", "sure",
                                  "de acuerdo", "that works", "he says yes", "go ahead", "yes ok"])
def test_unambiguous_yes(text):
    assert read(text).answer == "yes"


@pytest.mark.parametrize("text", ["ok", "OK.", "okay", "ah ok", "oh okay", "fine", "alright", "vale", "ya, vale", "bueno"])
def test_a_bare_acknowledgement_is_read_not_agreed(text):
    r = read(text)
    assert r.ack and r.answer != "yes"


@pytest.mark.parametrize("text", ["y", "Y", "k", "ok?", "si puedo ir el martes", "yes but can we do Tuesday instead?",
                                  "sim, pode marcar"])
def test_not_a_yes(text):
    assert read(text).answer != "yes"


@pytest.mark.parametrize("text", [
    "maybe", "Yeah maybe, I need to check with my daughter first", "let me think", "probably the second one",
    "I'm not sure", "a lo mejor", "déjame pensarlo", "dejame pensarlo", "quizás el martes",
    "tengo que preguntarle a mi hija", "no sé",
])
def test_hedges(text):
    assert read(text).answer == "hedge"


def test_no_and_cancel_in_spanish():
    r = read("No, todavía no quiero la cita")
    assert r.answer == "no" and r.cancel and not r.yes
    assert read("sí, cancélela por favor").consents_to_cancel
    assert not read("quiero cancelar").consents_to_cancel              # a request, not a yes: asked back


@pytest.mark.parametrize("text, index", [("yes please book the first one", 0), ("book option 2 please yes", 1),
                                         ("Sí, por favor, el segundo", 1), ("sí, cámbiela al segundo", 1),
                                         ("ya, sí, el primero por favor", 0)])
def test_yes_to_one_named_offer(text, index):
    r = read(text)
    assert r.consents_to_pick and r.pick == index


@pytest.mark.parametrize("text", ["maybe the second one", "a lo mejor el primero", "is the first one a monday?",
                                  "¿el primero es por la mañana?", "the first one"])
def test_no_consent_to_a_named_offer(text):
    assert not read(text).consents_to_pick


@pytest.mark.parametrize("text, code", [
    ("I would like to book the first one please", "en"), ("¿Cuándo es mi cita?", "es"),
    ("tengo que preguntarle a mi hija primero", "es"),
    ("oui, le premier rendez-vous me convient, merci", lang.OTHER), ("Ja, der erste Termin passt mir gut", lang.OTHER),
    ("Obrigada. Na verdade eu quero desmarcar a consulta", lang.OTHER), ("Tôi muốn hủy lịch hẹn", lang.OTHER),
    ("予約をキャンセルしたい", lang.OTHER), ("2", ""), ("ok", ""),
])
def test_language_detection(text, code):
    assert lang.detect(text, BOTH) == code


def test_a_language_the_tenant_did_not_declare_is_other():
    assert lang.detect("¿Cuándo es mi cita? Quiero cambiarla", ("en",)) == lang.OTHER
    assert lang.declared("en") == ("en",) and lang.declared(None) == ("en", "es")
    with pytest.raises(ValueError):
        lang.declared("en,fr")


@pytest.mark.parametrize("text", ["jjjjjjjjj", "kkkk ,,,, ;;", "ñññññ"])
def test_gibberish_is_not_understood(text):
    assert read(text).unintelligible


@pytest.mark.parametrize("text", ["2", "?", "y", "ok", "maybe"])
def test_short_replies_are_not_gibberish(text):
    assert not read(text).unintelligible


def test_thanks_logistics_status():
    assert read("thank you so much!").only_thanks and read("muchas gracias").only_thanks
    assert read("que tenga buen día").only_thanks
    assert read("where do i park??").logistics == ["parking"]
    assert read("¿dónde queda la clínica? ¿hay estacionamiento?").logistics == ["location", "parking"]
    assert read("do i need to bring anything").logistics == ["bring"]
    assert read("¿qué tengo que llevar?").logistics == ["bring"]
    for text in ("when is my appointment?", "when is it again", "¿cuándo es mi cita?", "¿cuándo es?", "¿tengo cita?",
                 "do i have anything booked right now?"):
        assert read(text).status, text


def test_spanish_dates_read_as_english():
    now = datetime(2030, 3, 4, 8, 0, tzinfo=timezone.utc)               # a Monday
    when = dates.parse(read("el martes por la tarde").date_text, now)
    assert when.day.isoformat() == "2030-03-05" and when.part == "afternoon"
    when = dates.parse(read("mañana a las 3").date_text, now)
    assert when.day.isoformat() == "2030-03-05" and when.at.hour == 15
    assert dates.parse(read("¿cualquier mañana de la próxima semana?").date_text, now).part == "morning"
    assert dates.parse(read("el 14 de marzo").date_text, now).day.isoformat() == "2030-03-14"


def test_every_fixed_text_exists_in_both_languages_and_only_ehr_rendered_ones_claim():
    en, es = lang.get("en").texts, lang.get("es").texts
    assert en.keys() == es.keys()
    rendered_from_the_ehr = {"booked", "replaced", "cancelled", "staff_cancelled", "staff_moved", "staff_noshow",
                             "staff_removed"}
    for texts in (en, es):
        for key, value in texts.items():
            assert not claims_action(value) or key in rendered_from_the_ehr, key


def test_dates_are_rendered_in_the_patients_language():
    from zoneinfo import ZoneInfo
    utc = ZoneInfo("UTC")
    assert render.when("2030-03-05T15:00:00Z", utc) == "Tuesday 5 March at 15:00"
    assert render.when("2030-03-05T15:00:00Z", utc, "es") == "el martes 5 de marzo a las 15:00"
    assert render.ask_confirm({"start": "2030-03-05T15:00:00Z"}, utc, "es") == \
        "¿Quiere que le reserve el martes 5 de marzo a las 15:00? Responda sí o no, por favor."
    assert claims_action("Su cita está confirmada para el martes") and claims_action("Le he reservado la cita")


@pytest.mark.parametrize("text, language, expected", [
    ("next tuesday afternoon", "en", "on Tuesday 8 December in the afternoon"),
    ("any morning on monday or thursday", "en", "on Monday or on Thursday in the morning"),
    ("el martes que viene por la tarde", "es", "el martes 8 de diciembre por la tarde"),
    ("el lunes o el jueves por la mañana", "es", "el lunes o el jueves por la mañana"),
    ("mañana a las 3", "es", "el jueves 3 de diciembre a las 15:00"),
])
def test_a_searched_window_is_told_in_the_patients_language(text, language, expected):
    now = datetime(2026, 12, 2, 9, 0, tzinfo=timezone.utc)  # a Wednesday
    when = dates.parse(lang.get(language).to_english_dates(lang.fold(text)) if language == "es" else text, now)
    assert render.window(when, language) == expected
    sentence = render.say("no_free_time", language, what=render.window(when, language))
    assert not any(name in sentence for name in lang.get("en" if language == "es" else "es").weekdays)


@pytest.mark.parametrize("text", [
    "Hi sorry for the slow reply. The diarrhea got worse and since last night there's been blood in it, quite a lot",
    "sory my chest has been hurting realy bad and I cant breath good when i lay down",
    "I get really dizzy when I stand up", "me duele mucho el pecho desde ayer", "hay sangre en el inodoro",
])
def test_urgent_symptoms_as_patients_write_them(text):
    assert read(text).urgent


@pytest.mark.parametrize("text", ["there is a blood test tomorrow", "is there blood work before the visit?",
                                  "mañana tengo análisis de sangre"])
def test_blood_tests_are_not_bleeding(text):
    assert not read(text).urgent


@pytest.mark.parametrize("text, index", [("Let's do the second one.", 1), ("I'll go with the last one", -1),
                                         ("Back to the appointment then: number two.", 1),
                                         ("Prefiero la tercera opción.", 2), ("Quisiera la primera", 0)])
def test_a_choice_inside_a_sentence(text, index):
    assert read(text).pick == index


@pytest.mark.parametrize("text", ["What's my new appointment time?", "¿Cuándo quedó mi cita entonces?",
                                  "Perdón, ¿para cuándo quedó mi cita?"])
def test_status_questions(text):
    assert read(text).status


@pytest.mark.parametrize("text", [
    "ok one sec", "ok wait", "wait", "hold on a sec", "hang on", "give me a minute", "sorry my dog is going crazy one sec",
    "sure, maybe", "yes I think so", "I'll see", "we'll see", "let me confirm with my ride", "hopefully, yes",
    "un momento", "un segundito", "espere", "déjame ver", "déjeme ver", "a ver", "lo pienso", "lo voy a pensar",
    "ya veremos", "creo que sí", "supongo que sí", "sí, si me dejan salir", "puede que sí",
])
def test_pauses_and_hedges_keep_the_offer_open(text):
    r = read(text)
    assert r.hedge and r.answer == "hedge", text


@pytest.mark.parametrize("text", ["no wait, keep it", "oh no wait, I have a recital that day", "wait when is it again"])
def test_wait_inside_a_sentence_is_not_a_pause(text):
    r = read(text)
    assert not r.hedge and r.answer != "yes"


@pytest.mark.parametrize("text", ["can I book a second appointment?", "I'll be one minute late, is that ok?",
                                  "quiero el segundo horario"])
def test_a_second_appointment_is_not_a_pause(text):
    assert not read(text).hedge


@pytest.mark.parametrize("text", ["sim", "Sim", "claro que sim", "Sim, pode ser", "oui", "Oui, c'est parfait", "ja",
                                  "Ja, das passt", "sim, ok", "yes sim"])
def test_another_languages_yes_is_never_a_yes(text):
    r = read(text)
    assert r.answer != "yes" and not r.yes, text


@pytest.mark.parametrize("text", ["sim", "claro que sim", "oui", "ja",
                                  "Bom dia, sou a vizinha da dona Carmen. Ela disse que pode ser o segundo horário, tá bom?",
                                  "Não posso ir na terça", "Ça me va"])
def test_portuguese_french_german_look_alikes_are_another_language(text):
    assert read(text).language == lang.OTHER, text


@pytest.mark.parametrize("text", ["Sí, ese", "sí, claro", "Sí, por favor, el segundo", "¿A qué hora es mi cita?",
                                  "la vergüenza de cancelar otra vez, perdón"])
def test_spanish_stays_spanish(text):
    assert read(text).language == "es", text


@pytest.mark.parametrize("text", ["¿Me confirma la hora de mi cita?", "When's my appointment?", "when's my appt",
                                  "Can you confirm my appointment?", "what time am I coming in?",
                                  "¿Me puede decir la hora de mi cita?", "¿Sigue en pie mi cita?"])
def test_more_status_questions(text):
    assert read(text).status, text


def test_slot_numbers_other_times_and_day_and_time_questions():
    assert read("Slot 1 for me").pick == 0 and read("slot 2").choice == 1
    assert read("what day and time is my appointment again?").status
    assert read("¿Qué otros horarios tiene?").availability
    r = read("Yes, switch it")
    assert r.yes and r.move and r.answer != "yes"           # a yes to a proposed new time only (agent.py)
