"""Spanish: the pattern table and the text table. Patterns match accent-folded lower-case text
(``lang.fold``: "Sí" -> "si", "déjame" -> "dejame"), so both spellings are understood."""
from __future__ import annotations

import re

from services.scheduling.lang.es_urgency import URGENCY  # noqa: F401 (the language's urgent-symptom table)

CODE = "es"
_I = re.IGNORECASE


def _any(*alternatives: str, start: bool = False) -> re.Pattern:
    return re.compile((r"^\s*[¡¿]?\s*" if start else r"\b") + "(" + "|".join(alternatives) + r")(?!\w)", _I)


PATTERNS: dict[str, re.Pattern] = {
    "staff": _any(r"(me )?(puede|podria|pueden|podrian) llamar (una|un|la|el|alguien)",
                  r"llamar(me)? (alguien|una enfermera|un medico|una persona)", r"me (puede|pueden|podria|podrian) llamar",
                  r"(una|un) (enfermer[oa]|medic[oa]|doctor[a]?) (me )?(puede|podria)? ?llam(e|ar)",
                  r"(hablar|habl(e|o)) con (una|un|la|el|alguien|mi) ?(persona|enfermer[oa]|medic[oa]|doctor[a]?|humano)?",
                  r"que me llame (alguien|una enfermera|un medico|el medico|la doctora|el doctor)",
                  r"llamenme", r"necesito (una persona|a alguien|una enfermera)",
                  r"(quiero|quisiera|necesito|puedo) hablar con", r"(me )?(devolver|devuelvan|devuelva|regresar|regresen|regrese)(me)? la llamada", r"persona real"),
    # a yes: a weak affirmative opening the message, a strong one anywhere, or an explicit "reserve it"
    # (accent-folded text: "sí" and "si" read the same; "si" alone in mid-sentence is "if", so only at the start)
    "yes": re.compile(r"^\s*[¡]?\s*si(\W*$|[,.!]|\s+(si|por favor|claro|el|la|reserv|cancel|quiero|me parece|esta bien|"
                      r"perfecto|vale|gracias|adelante|de acuerdo))|"
                      r"^\s*[¡]?\s*((ah|oh|ya|bueno|mm+)\W+)?(ok|okay|vale|entendido|bueno|perfecto|esta bien|de acuerdo|claro|correcto|adelante|dale|"
                      r"genial|me parece bien|me viene bien|por supuesto|confirmo)\b|"
                      r"(^|[\s,.;:!¡])si[,.!]+\s|,\s*si\W*$|^\W*si,?\s+(mij[oa]|hij[oa]|senorita|senora|senor|seno|doctor|doctora|joven|"
                      r"mi amor|amor|corazon|andele|ande|dale|ese|esa|ese mismo|esa misma|porfa|porfavor|pues)\W*$|\b(claro que si|de acuerdo|por supuesto|vale)\b|"
                      r"\b(reserve(lo|la|me)?|reservelo|reservela|reservemela|reservemelo|resérvelo|"
                      r"(cambiela|muevala|pasela) (al|a la))\b", _I),
    "no": re.compile(r"^\s*[¡¿]?\s*(no|nop|tampoco|ninguna?)\b|\bno me (viene|va|sirve|conviene)\b|\btodavia no\b|"
                     r"\baun no\b|\bmejor no\b|\bno quiero\b", _I),
    "hedge": _any(r"a lo mejor", r"quizas?", r"tal vez", r"puede ser", r"posiblemente", r"probablemente", r"no (lo )?se",
                  r"no estoy segur[oa]", r"dejame (pensarlo|pensar|ver|consultar|mirar)", r"dejeme (pensarlo|pensar|ver|consultar|mirar)",
                  r"(lo )?tengo que (pensar|consultar|preguntar|mirar|ver|hablar)", r"necesito (pensarlo|pensar|consultar|preguntar|hablar)",
                  r"(le|te) (digo|aviso|confirmo) (luego|despues|mas tarde|manana)", r"ya (le|te) (digo|aviso|confirmo)",
                  r"lo pienso", r"pensarlo", r"consultarlo", r"preguntar(le)? a mi", r"con mi (hija|hijo|esposo|esposa|marido|mujer|familia)",
                  r"ya veremos", r"veremos", r"creo que", r"(yo )?creo\W*$", r"seguramente", r"en teoria", r"espero que si", r"lo voy a pensar", r"lo (consulto|hablo|veo|miro|reviso)", r"creo que (si|puedo|me sirve)",
                  r"supongo", r"igual (si|puedo)", r"capaz", r"puede que", r"ojala", r"en principio", r"si puedo", r"si me dejan",
                  r"(luego|despues|ahorita|mas tarde|manana) (le|te) (digo|aviso|confirmo)", r"(le|te) aviso",
                  r"no (lo )?tengo claro", r"no (estoy|toy) segur\w*", r"todavia no (lo )?(se|decido|he decidido)",
                  r"tengo que (revisar|confirmar|ver)", r"dejeme (revisar|confirmar|preguntar)", r"dejame (revisar|confirmar|preguntar)"),
    # una pausa, no una respuesta: "un momento", "espere", "déjeme ver"
    "pause": re.compile(r"\b(un|un momentito|un segundito) ?(momento|momentito|segundo|segundito|minuto|minutito)\b(?!\s*(horario|hora|cita|turno|dia|de retraso|tarde))|\bun momentito\b|"
                        r"^\W*((ok|vale|si|bueno|ah|oh)\W+)?(espere|espera|esperame|espereme|aguarde|aguarda)( un (momento|momentito|segundo|minuto))?"
                        r"( por favor)?\W*$|\b(a ver|dejame ver|dejeme ver|deja ver)\b|"
                        r"\bahorita (vuelvo|le escribo|le contesto)\b|\bya vuelvo\b", _I),
    "thanks": _any(r"gracias+", r"muchas gracias", r"mil gracias", r"se lo agradezco", r"te lo agradezco", r"muy amable"),
    "greeting": re.compile(r"^\s*[¡]?\s*(hola|buenas|buenos dias|buenas tardes|buenas noches)\W*$", _I),
    "availability": _any(r"(que|cuales) (otros |otras )?(dias|horarios|horas|citas|fechas)", r"(otros|mas) horarios", r"otras horas", r"cuales horarios", r"(otra|nueva) (hora|cita|fecha)",
                         r"(me )?(da|puede dar|podria dar|deme|dame|denme) otra", r"tienen algo", r"tiene algo", r"disponib\w*",
                         r"lo (mas|antes) (pronto|temprano) posible", r"que tiene", r"que tienen"),
    "goodbye": _any(r"adios", r"nos vemos", r"hasta (el|la) (lunes|martes|miercoles|jueves|viernes|proxima|vista)", r"hasta luego", r"hasta pronto", r"buen dia", r"que tenga (un )?buen dia"),
    "status": _any(r"cuando es mi (cita|consulta|visita)", r"^\W*(y )?(ahora )?cuando es\b", r"cuando es( ahora)?\W*$",
                   r"a que hora (es|quedo)\b", r"(me )?cambiaron (la|mi) cita", r"(tengo|queda) (alguna )?cita\W*$",
                   r"a que hora es mi (cita|consulta|visita)",
                   r"(que dia|cuando) (tengo|es) (la|mi) (cita|consulta|visita)", r"tengo (una |alguna )?(cita|consulta)",
                   r"cual es mi (cita|hora)", r"mi proxima (cita|consulta|visita)", r"sigue (en pie )?mi (cita|consulta)",
                   r"para cuando (es|tengo) (mi|la) cita", r"recuerdeme (mi|la) cita",
                   r"(para )?cuando (quedo|queda) (mi|la) (cita|consulta|visita)",
                   r"(me )?(confirma|puede confirmar|podria confirmar|recuerda|puede recordar|dice|puede decir|podria decir) "
                   r"(la hora|el dia|la fecha|cuando es|a que hora es|que dia es) (de )?(mi|la) (cita|consulta|visita)",
                   r"(la )?(hora|dia|fecha) de (mi|la) (cita|consulta|visita)", r"(cuando|a que hora) (tengo que|debo) (ir|venir)",
                   r"sigue (en pie )?(la|mi) (cita|consulta)", r"(tengo|tenia) (la|mi) cita (para )?cuando",
                   r"cuando (me toca|tengo cita)", r"(a que hora|que dia|cuando) (era|es|fue) (que )?(me toca|la cita|mi cita)",
                   r"que (dia|hora|fecha) (quedamos|quedo|era)", r"recuerde(me)? (la hora|el dia|la fecha|cuando)", r"(cuando|when) (es|is) la cita",
                   r"(cual|que) es la (nueva )?(hora|fecha)"),
    "cancel": _any(r"cancel(ar|e|a|ela|arla|en)", r"anular", r"no puedo (ir|venir|asistir)", r"no voy a poder (ir|venir|asistir)",
                   r"no (quiero|necesito) (la|mi|esa|esta) (cita|consulta|visita)", r"no voy a ir", r"quitar (la|mi) cita"),
    "reschedule": _any(r"cambiar", r"cambie", r"mover", r"mueva", r"reprogramar", r"otro dia", r"otra hora", r"otra fecha",
                       r"en vez de", r"en lugar de", r"aplazar", r"posponer", r"mas tarde", r"mas temprano", r"antes"),
    "location": _any(r"donde (esta|queda|es) (la clinica|el consultorio|el hospital|la consulta|el centro)", r"direccion",
                     r"como llego", r"donde tengo que ir", r"a donde voy", r"donde queda", r"donde esta"),
    "hours": _any(r"a que hora abren", r"horario de (la clinica|atencion)", r"cuando abren"),
    "parking": _any(r"aparcar", r"me estaciono", r"aparcamiento", r"estacionar", r"estacionamiento", r"parqueo", r"parquear", r"parking"),
    "bring": _any(r"que (tengo|debo|hay) que (llevar|traer)", r"que (debo|tengo que|necesito) (llevar|traer)",
                  r"(llevar|traer) algo", r"que llevo", r"que traigo"),
    "question": re.compile(r"[?¿]|^\s*(que|donde|como|quien|por que|cuando|cual|puede|puedo|hay|es|tengo)\b|"
                           r"\b(a que hora|que dia|cuando|donde|cual(es)?)\b", _I),
    "scheduling_words": _any(r"cita", r"hora", r"horario", r"consulta", r"visita", r"reserv\w*", r"disponib\w*",
                             r"infusion", r"seguimiento"),
}
#: Un simple acuse de recibo: leido, no aceptado.
ACKS = frozenset({"vale", "ok", "okay", "oki", "bueno", "entendido"})
PICK = re.compile(r"\b(?:el|la|al|del|quiero el|quiero la) (primer[oa]?|segund[oa]|tercer[oa]?|ultim[oa]|de(?:l)? (?:en )?medio)\b|"
                  r"\bopcion (1|2|3|uno|dos|tres)\b|^\W*(primer[oa]|segund[oa]|tercer[oa])\b", _I)
PICKS = {"primero": 0, "primera": 0, "primer": 0, "1": 0, "uno": 0, "segundo": 1, "segunda": 1, "2": 1, "dos": 1,
         "tercero": 2, "tercera": 2, "tercer": 2, "3": 2, "tres": 2, "ultimo": -1, "ultima": -1, "del medio": 1, "de medio": 1,
         "del en medio": 1, "de en medio": 1}
ORDINALS = {"1": 0, "uno": 0, "una": 0, "primera": 0, "primero": 0, "1a": 0, "1o": 0,
            "2": 1, "dos": 1, "segunda": 1, "segundo": 1, "2a": 1, "2o": 1,
            "3": 2, "tres": 2, "tercera": 2, "tercero": 2, "3a": 2, "3o": 2, "ultima": -1, "ultimo": -1}
ORDINAL = re.compile(r"^\s*(?:la\s+|el\s+)?(?:opcion\s*|numero\s*|#\s*|n\.?\s*)?"
                     r"(1a|2a|3a|1o|2o|3o|1|2|3|uno|una|dos|tres|primera|primero|segunda|segundo|tercera|tercero|ultima|ultimo)"
                     r"(\s+(opcion|hora))?\s*[.!]?\s*(,?\s*por favor)?\s*[.!]?\s*$", _I)

MARKERS = frozenset("""
yo me mi mis usted le lo la las los el un una unos unas y o pero que de del en con por para es son esta estoy
estan tengo tiene hay gracias favor hola buenos buenas dias tardes cita citas consulta visita hora dia semana
manana tarde hoy quiero puedo puede podria necesito cuando donde como cual qui quien vale claro bien muy
lunes martes miercoles jueves viernes sabado domingo proxima proximo otra otro primera segunda tercera dolor
pecho enfermera medico llamar cancelar cambiar todavia aun ya mejor tal vez quizas pensarlo hija hijo esposo
esposa perdon disculpe aparcar llevar traer nada algo eso esa este ese se ver dejame dejeme pensar mire cuento
al primero segundo tercero ultimo cambiela reserve reservelo ahora entonces tambien porque usted quisiera ir venir
mal ayer anoche desde tengo aqui alli hija mama papa gracias
""".split())

WEEKDAYS = ("lunes", "martes", "miércoles", "jueves", "viernes", "sábado", "domingo")
MONTHS = ("enero", "febrero", "marzo", "abril", "mayo", "junio", "julio", "agosto", "septiembre", "octubre",
          "noviembre", "diciembre")
WHEN_FORMAT = "el {weekday} {day} de {month} a las {time}"

TEXTS = {
    "safe_reply": "Gracias por su mensaje. No he podido completarlo automáticamente; una persona del equipo de la "
                  "clínica revisará su solicitud y se pondrá en contacto con usted.",
    "urgent_reply": "Lo que describe puede necesitar atención urgente. Si tiene dolor en el pecho, dificultad para "
                    "respirar o se siente muy mal, llame al 911 o vaya ahora a la sala de emergencias más cercana. He "
                    "avisado a nuestro equipo y una enfermera se pondrá en contacto con usted pronto. No programaré "
                    "nada en esta conversación.",
    "safety_handoff": "He pasado su mensaje a una persona del equipo de la clínica, que se pondrá en contacto con "
                      "usted. Si se siente muy mal, llame al 911 o vaya a la sala de emergencias más cercana.",
    "redirect": "Aquí solo puedo ayudarle con sus citas. Para otras preguntas, llame a la clínica o pregunte a su "
                "equipo en la visita.",
    "not_understood": "Perdone, no le he entendido. Responda con el número de una opción, o con un día y una hora "
                      "(por ejemplo \"el martes por la tarde\" o \"mañana a las 3\").",
    "handoff": "He pedido a una persona del equipo de la clínica que se ponga en contacto con usted para buscar una hora.",
    "no_appointment": "No encuentro ninguna cita próxima a su nombre.",
    "staff_requested": "He pedido a una persona del equipo de la clínica que se ponga en contacto con usted. Si se "
                       "siente muy mal, llame al 911 o vaya a la sala de emergencias más cercana.",
    "escalated": "Una persona de nuestro equipo tiene sus mensajes y se pondrá en contacto con usted.",
    "open_intro": "Su equipo médico quiere verle en una visita de seguimiento. Estas horas están disponibles:",
    "patient_intro": "Estas horas están disponibles:",
    "offers_outro": "Responda con el número de la hora que le venga bien, o dígame otro día u otra hora.",
    "offers_again": "Las horas que puedo ofrecerle:",
    "offers_have": "Las horas que tengo:",
    "ask_confirm": "¿Quiere que le reserve {when}? Responda sí o no, por favor.",
    "ask_cancel": "¿Quiere que anule su cita del {when_bare}? Responda sí o no, por favor.",
    "keep_appointment": "De acuerdo, dejo su cita del {when_bare} como está.",
    "booked": "Su cita queda reservada para {when}.",
    "replaced": " Su cita anterior del {when_bare} queda cancelada.",
    "cancelled": "Su cita del {when_bare} queda cancelada.",
    "upcoming": "Sus próximas citas: {list}.",
    "list_sep": "; ",
    "taken": "Lo siento, alguien acaba de reservar esa hora.",
    "book_failed": "Lo siento, no he podido completar la reserva. Una persona del equipo de la clínica lo revisará y "
                   "se pondrá en contacto con usted; no cuente con esa hora hasta entonces.",
    "release_failed": "No he podido liberar su cita anterior; el equipo de la clínica lo resolverá.",
    "no_problem_offers": "No hay problema.",
    "acknowledged": "De acuerdo. Si necesita reservar, cambiar o anular una visita, escríbame.",
    "hello": "¡Hola!",
    "bye_close": "¡Igualmente, cuídese! Escríbame aquí cuando necesite reservar, cambiar o anular una visita.",
    "no_problem_ask": "No hay problema. ¿Qué día u hora le vendría mejor?",
    "which_one": "¿Qué día u hora le viene bien? Puede responder con el número de una opción.",
    "find_time": "¿Quiere que le busque una hora? Dígame un día o una hora que le venga bien.",
    "not_sure_date": "Perdone, no sé bien a qué fecha se refiere ({why}). ¿Me puede decir el día de la semana y la "
                     "fecha, por ejemplo \"martes 14 de marzo\"?",
    "no_free_time": "Lo siento, no tengo horas libres {what}.",
    "no_free_time_ask": "Lo siento, no tengo horas libres {what}. ¿Qué otro día le vendría bien?",
    "in_the_next_days": "en los próximos días",
    "yes_to_book": "Para reservarle {when}, responda sí, por favor. O dígame otro día u otra hora.",
    "on_day": "el {weekday} {day} de {month}",
    "on_weekday": "el {weekday}",
    "or": " o ",
    "part_morning": "por la mañana",
    "part_afternoon": "por la tarde",
    "part_evening": "por la noche",
    "at_time": "a las {time}",
    "that_time": "a esa hora",
    "hedge_slot": "Sin prisa. Todavía no he hecho ninguna reserva: {when} sigue ofrecida por ahora. Responda sí cuando quiera "
                  "que la reserve, o dígame otro día u otra hora.",
    "hedge_offers": "Sin prisa. Todavía no he hecho ninguna reserva y las horas que le ofrecí siguen abiertas por ahora. "
                    "Responda con el número de una hora cuando lo tenga claro, o dígame otro día u otra hora.",
    "hedge_cancel": "Sin prisa. Su cita del {when_bare} sigue como está. Responda sí si quiere que la anule.",
    "confirm_again": "Para estar seguros: ¿quiere que le reserve {when}? Responda sí o no, por favor.",
    "confirm_cancel_again": "Para estar seguros: ¿quiere que anule su cita del {when_bare}? Responda sí o no, por favor.",
    "kept_after_no": "De acuerdo, no he cambiado nada: su cita del {when_bare} sigue como está. Si quiere anularla o "
                     "cambiarla, dígamelo.",
    "thanks_close": "¡De nada! Escríbame aquí cuando necesite reservar, cambiar o anular una visita. Cuídese.",
    "thanks_open": "¡De nada!",
    "staff_cancelled": "Aviso de la clínica: la clínica ha cancelado su cita del {when_bare}.",
    "staff_moved": "Aviso de la clínica: la clínica ha cambiado su cita del {old_bare} al {when_bare}.",
    "staff_noshow": "Aviso de la clínica: en nuestros registros su cita del {when_bare} figura como no asistida.",
    "staff_removed": "Aviso de la clínica: su cita ya no figura en los registros de la clínica.",
    "declined": "De acuerdo, no he hecho ninguna reserva. Si más adelante quiere una hora, escríbame.",
    "offer_new_time": "Si quiere una nueva hora, dígame un día o una hora que le venga bien.",
    "status_prefix": "",
    "logistics_missing": "No tengo esa información aquí; llame a la clínica y el equipo le ayudará.",
}

#: Spanish date words -> the English ones ``dates.parse`` reads (applied to accent-folded text).
_DATE_WORDS = [
    (r"\bpasado manana\b", "day after tomorrow"),
    (r"\bcualquier manana\b", "any morning"), (r"\bcualquier tarde\b", "any afternoon"),
    (r"\bmanana por la manana\b", "tomorrow morning"),
    (r"\bmanana por la tarde\b", "tomorrow afternoon"),
    (r"\b(por|de|en) la manana\b", "morning"), (r"\b(por|de|en) la tarde\b", "afternoon"),
    (r"\b(por|de|en) la noche\b", "evening"), (r"\blas mananas\b", "mornings"), (r"\blas tardes\b", "afternoons"),
    (r"\bmanana\b", "tomorrow"), (r"\bhoy\b", "today"),
    (r"\b(la semana que viene|la proxima semana|la semana proxima)\b", "next week"), (r"\besta semana\b", "this week"),
    (r"\b(el )?proximo\b", "next"), (r"\bcualquier\b", "any"),
    (r"\blunes\b", "monday"), (r"\bmartes\b", "tuesday"), (r"\bmiercoles\b", "wednesday"), (r"\bjueves\b", "thursday"),
    (r"\bviernes\b", "friday"), (r"\bsabado\b", "saturday"), (r"\bdomingo\b", "sunday"),
    (r"\benero\b", "january"), (r"\bfebrero\b", "february"), (r"\bmarzo\b", "march"), (r"\babril\b", "april"),
    (r"\bmayo\b", "may"), (r"\bjunio\b", "june"), (r"\bjulio\b", "july"), (r"\bagosto\b", "august"),
    (r"\bseptiembre\b", "september"), (r"\boctubre\b", "october"), (r"\bnoviembre\b", "november"),
    (r"\bdiciembre\b", "december"),
    (r"\b(\d{1,2}) de (january|february|march|april|may|june|july|august|september|october|november|december)\b", r"\1 \2"),
    (r"\ba las (\d{1,2})(:\d{2})?\b", r"at \1\2"), (r"\ba la (1)(:\d{2})?\b", r"at \1\2"),
    (r"\bmediodia\b", "noon"),
    (r"\b(el|dia) (\d{2}|[4-9])\b(?! de)(?!:)", r"the \2th"),
]


def to_english_dates(folded: str) -> str:
    out = folded
    for pattern, english in _DATE_WORDS:
        out = re.sub(pattern, english, out)
    return out
