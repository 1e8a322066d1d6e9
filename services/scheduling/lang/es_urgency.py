"""Spanish: the urgent-symptom lexicon (``URGENCY``, read by ``services.scheduling.urgency``)."""
from __future__ import annotations

#: Síntomas urgentes (``services.scheduling.urgency``): un léxico de conceptos de síntomas con las guardas que
#: anulan una coincidencia (negación, "si", pasado, ya resuelto, modismos y análisis). Texto en minúsculas sin acentos.
_SALIDA = (r"heces|caca|popo|pupu|deposicion\w*|evacuacion\w*|bano|inodoro|papel|taza|orina|pipi|vomit\w*|tos\w*|"
           r"escup\w*|diarrea|limpi\w*|recto|excremento|nariz|moco\w*")
_FUERTE = (r"muy fuerte|fuertes?|muchisimo|mucho|terrible|horrible|insoportable|intens[oa]|sever[oa]|grave|"
           r"no me puedo enderezar|no aguanto|[7-9] ?/ ?10|10 ?/ ?10|de repente|el peor|la peor|espantos[oa]")
_FIEBRE = r"fiebre|calentura|temperatura|febril"
_ALTA = r"3[89]([.,]\d+)?|4[0-2]([.,]\d+)?|100[.,][4-9]\d*|10[1-6]([.,]\d+)?"
_MUCHAS = r"[6-9]|[1-9]\d|seis|siete|ocho|nueve|diez|once|doce|una docena"
_SINTOMA = (r"dolor\w*|duele\w*|sarpullido|ronchas|erupcion|granitos|picaz\w*|comezon|tos|tosiendo|nause\w*|vomit\w*|diarrea|"
            r"fiebre|calentura|escalofrios|hinch\w*|inflamad\w*|colicos?|sangr\w*|mare\w*|debil\w*|entumid\w*|hormigue\w*|cansancio|"
            r"cansad\w*|agotad\w*|sudor\w*|sintomas?|efectos secundarios|manchas|bolitas")
_PEOR = (r"peor|empeor\w*|cada vez (mas|peor)|se (esta )?(extiende|extendiendo|riega|regando)|aument\w*|"
         r"no (se me |se le |se )?(quita|mejora|va|para)|no ha mejorado|de repente|mas (que|de lo) (antes|normal|usual|de costumbre)|"
         r"nunca (habia|he) tenido|primera vez|desde (ayer|anoche|hace|esta manana|el)|empez\w*|comenz\w*")
URGENCY = {
    "concepts": {
        "chest": [
            r"(dolor|presion|opresion|ardor) ([\w']+ ){0,3}(que )?(se )?(va|baja|corre|irradia\w*|pasa) ([\w']+ ){0,3}(brazo|mandibula|cuello|espalda|hombro)",
            r"pecho ([\w']+ ){0,3}(raro|extrano|apretad\w*|pesad\w*)", r"(aprieta|oprime) el pecho", r"angina",
            r"dolor\w* ([\w']+ ){0,2}(en el|de|del) pecho", r"(me|le|te) duele ([\w']+ ){0,3}(el |mi |su )?pecho",
            r"pecho ([\w']+ ){0,2}(apretado|duele|aprieta|oprime|arde|pesado)", r"(presion|opresion|peso) en el pecho",
            r"infarto", r"ataque al corazon"],
        "breathing": [
            r"(no|casi no) (me )?(entra|llega) (el |suficiente )?aire", r"(no|casi no) (puedo|puede) (tomar|agarrar|jalar|coger) (aire|aliento)",
            r"respir\w* ([\w']+ ){0,2}(corto|cortit\w*|dificil|pesad\w*)", r"cuesta trabajo respirar",
            r"(me|le) (agito|agita|canso|cansa|ahogo|ahoga) (mucho |muy rapido |rapido )?(al|cuando|con)", r"(fatiga|agitacion) al (caminar|hablar|subir)",
            r"(oxigeno|saturacion|oximetro) ([\w']+ ){0,3}(8\d|9[0-2]|baj\w*)", r"pulmones? ([\w']+ ){0,3}(arden|duelen|silban|pesad\w*)",
            r"tos ([\w']+ ){0,3}(no para|sin parar|toda la noche|no me deja|cada vez peor|peor)",
            r"(no|apenas|casi no) (puedo|puede|podia|podemos|pude) respirar", r"no respir\w* bien", r"(me|le|te) cuesta (mucho )?respirar",
            r"(dificultad|problemas?) (para|al) respirar", r"(me|se|te) ahog\w*", r"ahogo", r"ahogand\w*", r"(me|le|te) falta (el |la )?(aire|aliento|respiracion)",
            r"falta de (aire|aliento)", r"(me quedo|se queda|quedo|quede|me quede) sin (aire|aliento)", r"sin aire",
            r"respir\w* (muy |bien )?(rapido|agitad\w*|con silbido|raro|con dificultad|mal)", r"silbido", r"labios ([\w']+ ){0,2}(morados|azules|grises)",
            r"se (me|le) cierra la garganta", r"garganta ([\w']+ ){0,2}(cerrando|cierra|hinchada|cerrada)", r"asfixi\w*", r"se (me|le|te) (fue|va|iba|acaba|acabo|corta|corto) (el )?(aire|aliento|respiracion)"],
        "bleeding": [
            r"(heces|caca|popo|pupu|orina|pipi|vomito|flema|moco\w*) ([\w']+ ){0,3}(roj\w*|con sangre|sanguinolent\w*)",
            r"(sangrado|sangre) (de|por) (la )?nariz ([\w']+ ){0,4}(no (para|se detiene|se quita)|\d+ minutos|una hora|horas)",
            r"(orina|pipi) ([\w']+ ){0,3}(roja|rosada|con sangre)", r"(sangran|sangrado de|me sangran) (las )?encias",
            r"moretones ([\w']+ ){0,3}(por todo|todo el cuerpo|sin razon|sin motivo|por todas partes)", r"hemorragia",
            r"(vomit\w*|escup\w*|tos\w*) ([\w']+ ){0,3}(roj\w*|sangre)",
            (r"sangr\w*", _SALIDA), r"(heces|caca\w*|popo\w*|pupu\w*|deposicion\w*|excremento\w*) ([\w']+ ){0,2}(negr\w*|alquitran|como (el )?alquitran)",
            r"(negr\w*) (heces|caca|popo)", r"(posos|asientos|granos) de cafe", r"cafe molido",
            r"(hay|habia|salio|sale|con) (mucha |un poco de |bastante |algo de )?sangre", r"sangrado"],
        "syncope": [r"desvaneci\w*", r"(me|se) (desvanezco|desvanece)",
            r"(casi|por poco) (me desmayo|me desmaye|se desmaya|se desmayo|me caigo|se cae)", r"perd\w* el sentido", r"inconsciente",
            r"(desperte|amaneci|me encontraron|lo encontre|la encontre|lo encontramos|la encontramos) (tirad[oa] )?(en el )?(piso|suelo)",
            r"se (me|le) doblaron las (piernas|rodillas)",r"desmay\w*", r"perd\w* el conocimiento", r"(me|se) (cai|cayo) (al suelo|redond\w*)", r"se desvanec\w*",
                    r"todo (se puso|se me puso) (negro|oscuro)"],
        "dizziness": [
            r"perd\w* el equilibrio", r"(sin|no tengo|no tiene) equilibrio", r"me tambaleo",
            r"mareos? ([\w']+ ){0,3}(todo el tiempo|constantes?|cada vez|no se me quita|todo el dia)",
            r"(muy|tan|bien|super) marea\w*", r"marea\w* ([\w']+ ){0,4}(no me puedo|me cai|al pararme|al levantarme|cuando me "
            r"(paro|levanto|pongo de pie))", r"mareos? (muy )?(fuerte|intenso)s?", r"me mareo mucho", r"(todo|el cuarto) (me )?da vueltas",
            r"vertigo", (r"mare\w*", r"me cai|se cayo|caida|no me puedo (parar|levantar)")],
        "confusion": [
            r"no reconoce a (nadie|su|sus|la|el|mi|los|las)",
            r"(olvid\w*|se me olvida\w*|se le olvida\w*) (donde|quien|que dia|como|el camino|las cosas|todo|nombres|palabras|a la gente)",
            r"(no|ya no) (me )?(acuerdo|recuerdo|recuerda|se acuerda) (de )?(nada|donde|quien|que dia|como|las cosas)",
            r"memoria ([\w']+ ){0,3}(mal|falla\w*|peor|perdida|problemas)", r"perdida de (la )?memoria", r"no (se|sabe) donde (estoy|esta)",
            r"(cabeza|mente) ([\w']+ ){0,2}(nublad\w*|confus\w*|lent\w*|en blanco)", r"(no|ya no) (pienso|piensa|razona|razono) (bien|claro)",
            r"(no )?(esta )?(habla\w*|dice|diciendo) ([\w']+ ){0,2}(sin sentido|incoherencias|incoherente|tonterias|cosas raras)",
            r"no (esta )?(habla\w*) con sentido", r"incoheren\w*", r"ve cosas que no (estan|hay)", r"alucin\w*",
            r"(esta|estoy|anda|ando) (como )?(perdid[oa]|ausente|ida|ido)\b", r"(revuelve|confunde) (las )?(palabras|nombres|personas)",
            r"confundid\w*", r"confusion", r"desorientad\w*", r"no (sabe|se) (que dia|donde esta|donde estoy|quien)",
            r"no (me|nos|la|lo|le) reconoce", r"(muy|bien|tan) (dormid\w*|somnolient\w*|adormilad\w*)",
            r"no (responde|respondia|reacciona|reaccionaba)", r"decaid\w*", r"(se|me) perd\w* ([\w']+ ){0,5}(a casa|de siempre|todos los dias|cada semana|que conozco|conocid\w*)",
            r"no (me acorde|recorde|recuerdo) (el camino|como)", r"habla (raro|arrastr\w*)", r"arrastra las palabras",
            r"no tiene sentido lo que dice", r"dice cosas sin sentido"],
        "seizure": [
            r"ojos ([\w']+ ){0,2}(en blanco|volteados)", r"espuma (por|en) la boca", r"(se )?(puso|quedo) (tiesa|tieso|rigid\w*)",r"convulsi\w*", r"ataque epilep\w*", (r"ataque", r"sacud\w*|tembl\w*|convuls\w*|espuma|no respond\w*"), (r"tembl\w*|tiembl\w*|sacud\w*", r"piso|suelo|no respond\w*|no contest\w*|todo el cuerpo|"
                                                                                r"todo\b")],
        "skin": [
            r"(cae|cayendo|caer|cayo|desprende|desprendiendo) ([\w']+ ){0,2}la piel", r"piel ([\w']+ ){0,3}(cae|cayendo|desprend\w*)",
            r"ampolla\w*", r"se (me|le) (esta |estan )?pel\w*", r"piel ([\w']+ ){0,3}pel\w*", r"pelando", r"despell\w*", r"llagas?", r"(ulceras|aftas) ([\w']+ ){0,2}boca",
            r"(labios|cara|lengua|ojos|parpados) ([\w']+ ){0,3}hinch\w*", r"hinch\w* ([\w']+ ){0,3}(labios|cara|lengua)",
            r"(sarpullido|ronchas|erupcion|salpullido|granos) ([\w']+ ){0,4}(todo el cuerpo|toda la cara|todas partes|por todo|"
            r"la cara|se extiende)", r"se me cae la piel", r"piel ([\w']+ ){0,3}(cae|cayendo)"],
        "jaundice": [r"(piel|ojos|cara|se ve|se ven) ([\w']+ ){0,2}amarill\w*", r"amarill\w* ([\w']+ ){0,2}(piel|ojos)",
                     r"ictericia", r"orina ([\w']+ ){0,2}(oscura|como (te|coca|refresco)|cafe|marron)"],
        "fever": [
            r"sudores nocturnos", r"(temblando|tiritando) de frio", r"ardiendo en fiebre", r"(3[89]|4[0-2])([.,]\d+)? ?(°|grados?) ?c\b",(_FIEBRE, _ALTA),
                  r"(tengo|tiene) (3[89]|4[0-2])([.,]\d+)?( ?(grados|°c?|c))?(?!\s+(anos|meses|dias|semanas|horas|minutos|"
                  r"kilos|kg|libras|pesos|dolares|euros|citas))", r"fiebre (muy )?alta", r"(mucha|bastante) fiebre",
                  (_FIEBRE, r"escalofrios|temblores|chills"),
                  r"(tengo|tiene|tenemos|con|me dio|le dio|me subio la|le subio la) (mucha )?(fiebre|calentura)"],
        "diarrhoea": [
            (r"bano|inodoro|vater|wc|sanitario", r"(" + _MUCHAS + r")\s*\+?\s*(o \d+\s+)?(veces|x)\b|\bx\s?(" + _MUCHAS + r")\b|cada hora|sin parar|toda la noche"),
            (r"diarrea|deposicion\w*|evacuacion\w*|heces|caca|popo|cursos|obr\w*",
             r"(" + _MUCHAS + r")\s*(o \d+\s+)?(veces|x|deposiciones|evacuaciones|times)\b|\bx\s?(" + _MUCHAS + r")\b"),
            (r"diarrea", r"cada hora|toda la noche|todo el dia|sin parar|no (puedo|me deja) salir del bano|no para"),
            r"no (puedo )?(salir|dejar de ir) del bano",
            r"diarrea ([\w']+ )?(muy )?(fuerte|intensa|grave|severa|terrible|horrible)", r"(mucha|muchisima|terrible) diarrea"],
        "abdominal": [(r"panza|barriga|estomago|abdomen|vientre|abdominal|colicos?|tripa|costado",
                       r"dolor\w*|duele|colicos?|retortijon\w*", _FUERTE)],
        "vomiting": [r"vomit\w* ([\w']+ ){0,3}(todo|todo el dia|toda la noche|sin parar|cada hora|([4-9]|\d\d) veces)",
                     r"no (me )?(pasa|retengo|tolero|aguanta) (ni )?(el agua|nada|nada de liquidos|liquidos)",
                     r"no (paro|puedo parar|deja) de vomitar", r"sigo vomitando",
                     r"vomit\w* (desde|hace) (anoche|ayer|esta manana|horas|\d+ (horas|dias)|dos dias)"],
        "headache_vision": [
            r"(vista|vision|ojos?) ([\w']+ ){0,3}(doble|borros\w*|nublad\w*|oscur\w*)",
            r"(vista|vision) ([\w']+ ){0,3}(borros\w*|nublad\w*|rara|manchas|oscur\w*|peor|doble|se me va)",
            r"veo (luces|destellos|puntos|manchas|sombras|moscas|estrellas|raro)", r"(ojo|ojos) ([\w']+ ){0,3}(rojo\w*|duele\w*|dolor)",
            r"(la )?luz ([\w']+ ){0,2}(molesta|duele|lastima) (a )?(los|mis) ojos", r"(me|le) molesta la luz", r"(el )?peor dolor de cabeza",
            r"(dolor de cabeza|cabeza) ([\w']+ ){0,4}(no se (me )?quita|(varios|dos|tres) dias|todos los dias|cuello rigido)", r"cuello rigido",
            r"no (puedo|puede) (ver|leer) (bien|nada|claro)",
            (r"dolor de cabeza|(me|le) duele ([\w']+ ){0,2}la cabeza|migrana|jaqueca", _FUERTE), r"(me|le) late la cabeza",
            r"veo ([\w']+ ){0,2}(doble|borroso|manchas|nublado)", r"vista ([\w']+ )?(borrosa|doble|nublada)", r"vision ([\w']+ )?(borrosa|doble)",
            r"no veo (bien|nada|de un ojo|del ojo)", r"perd\w* (la )?(vista|vision)", r"perdida de (la )?vision",
            r"parpados? ([\w']+ )?caid\w*"],
        "stroke_weakness": [
            r"(cara|boca) ([\w']+ ){0,3}(de un lado|caid\w*|cayo|colgad\w*)", r"se (me|le) (cayo|cae|esta cayendo) (la|un lado de la) (cara|boca)",
            r"se (me|le) debilit\w*", r"(se (me|le) )?(durmio|entumio|entumecio|adormecio) (\w+ )?(brazo|pierna|mano|cara|lado)", r"debil\w* ([\w']+ ){0,3}(brazo|pierna|lado|mano)",
            r"(brazo|pierna|mano|lado) ([\w']+ ){0,3}(debil\w*|dormid\w*|entumid\w*|adormecid\w*|no (lo|la) puedo mover)",
            r"cara ([\w']+ ){0,2}(caida|torcida|chueca)",
            r"(adormec\w*|entumec\w*|dormid\w*|durmio|paraliz\w*) ([\w']+ ){0,3}(mitad|lado|medio) ([\w']+ ){0,2}(cara|cuerpo)", r"boca (torcida|chueca)", r"(tan|muy) debil\w*", r"debil\w* que no",
            r"no (puedo|puede) (ni )?(caminar|andar|levantarme|levantarse|pararme|pararse|subir|agarrar|sostener|mover)",
            r"no (me|se) (puedo|puede) (levantar|parar|mover|enderezar)", r"debilidad (muy )?(fuerte|severa|intensa)",
            r"no puedo hablar bien", r"perd\w* (la |toda la )?fuerza (en|de|del) (el |la |los |las |mi |su |un |una )?(brazo|pierna|mano|lado|cara|pie)s?",
            r"(de repente|de golpe|repentinamente|de pronto) ([\w']+ ){0,3}(perd\w*|sin) (la )?fuerza", r"sin fuerza en (el |la |los |las |un |una |mi |su )?(brazo|pierna|mano|lado|cara|pie)s?"],
        "urine": [
            r"(orino|orina|pipi) ([\w']+ ){0,2}(casi nada|nada|muy poco|poquito)", r"deshidrat\w*", r"(muy|tan|bien|super) (sediento|sedienta)",
            r"(boca|labios|lengua) ([\w']+ ){0,2}(muy |bien |tan )?(sec\w*|partid\w*)", r"(mucha|muchisima) sed",r"(no|casi no|sin|apenas) (he |ha )?(hecho pipi|orinad\w*|orino|orina|orinar|meado|hago pipi|hace pipi)",
                  r"no (puedo|puede) orinar", r"(no|casi no) (he |ha )?ido a (orinar|hacer pipi)", r"casi sin orinar", r"orin\w* (muy |bien )?(poco|poquito|nada)", (r"(mucha )?sed", r"orin\w*|pipi")],
        "heart": [r"(corazon|pulso) ([\w']+ ){0,3}(acelerad\w*|late (muy |bien )?(rapido|fuerte|fuertisimo)|a mil|desbocad\w*)",
                  r"(me|le) late (muy |bien )?(rapido|fuerte) el corazon", r"palpitacion\w*", r"taquicardia", r"corazon ([\w']+ ){0,3}(se me sale|se sale)",
                  (r"corazon|pulso|latidos", r"rapid\w*|acelerad\w*|a mil|desbocad\w*|1[2-9]\d|late (muy |bien )?fuerte")],
        "suicidal": [
            r"ya no (puedo|aguanto) (mas|con esto)", r"(quiero|quisiera) que (todo|esto) (se acabe|termine|pare)",
            r"(tengo|he) (guardad\w*|juntad\w*|ahorrad\w*) (pastillas|medicinas|pildoras)", r"(guardando|juntando) (pastillas|medicinas|pildoras)",
            r"tomarme todas (las )?(pastillas|medicinas)", r"sobredosis", r"no (tiene|le veo) sentido (seguir|vivir)",
            r"(quiero|quisiera) (desaparecer|no estar aqui|no existir)", r"(estarian|estaria|estan) mejor sin mi", r"despedirme de todos",r"suicid\w*", r"quitarme la vida", r"matarme", r"(no|ya no) quiero (seguir )?vivi\w*", r"mejor sin mi",
                     r"hacerme dano", r"acabar con (todo|mi vida)", r"(pensado|pienso) (en )?como hacerlo", r"quiero morir\w*",
                     r"(quisiera|quiero|ojala) no despertar\w*", r"no despertar(me)? mas"],
        "very_unwell": [
            r"(me siento|se siente|siento|estoy|esta) ([\w']+ ){0,2}(de muerte|morir|muriendo|peor que nunca)", r"algo (no esta bien|anda mal|va mal)",
            r"nunca (me habia|me he) sentido (tan|asi de) (mal|debil|enferm\w*)", r"(cada vez|cada dia) (peor|mas debil)",
            r"no (puedo|puede) (comer|beber|tomar) nada", r"(no he|no ha) (comido|bebido) (nada )?(en|desde hace) (dias|\d+ dias|dos dias)",
            r"(me siento|se siente|siento|estoy|esta|me encuentro) (muy |bien |super |tan )(mal|enferm\w*)",
            r"(me siento|se siente|estoy|esta|me encuentro) (fatal|malisim\w*|horrible|terrible|pesim\w*)",
            r"no es (el|un) cansancio normal", r"duerm\w* ([\w']+ ){0,2}(1[6-9]|2[0-4]) horas", r"no (me )?puedo levantar",
            r"no se puede levantar"],
        "severe_pain": [
            r"(dolor|duele\w*|dolia) ([\w']+ ){0,3}(insoportable|terrible|horrible|espantos\w*|muy fuerte|fuertisimo|10 ?/ ?10|[89] ?/ ?10|"
            r"no (lo )?aguanto|no puedo mas|no me deja dormir)",
            r"(insoportable|terrible|horrible|intenso|fuertisimo|muy fuerte|espantoso) dolor", r"(llorando|gritando|llorar|gritar) (de|del) dolor",
            r"(mucho|muchisimo|demasiado) dolor", r"(me |le )?duele (mucho|muchisimo|demasiado|horrible|un monton)",
            r"(calmantes?|analgesicos?|pastillas para el dolor|paracetamol|ibuprofeno|morfina|tramadol) ([\w']+ ){0,3}no (me )?"
            r"(hace\w*|sirve\w*|funciona\w*|ayuda\w*|quita\w*)"],
        # un síntoma nuevo o que empeora (la precaución: lo lee una enfermera)
        "worsening": [(_SINTOMA, _PEOR), r"(nuevo|nueva|nuevos|nuevas) (" + _SINTOMA + r")", r"(" + _SINTOMA + r") (nuevo|nueva|nuevos|nuevas)"],
    },
    "spellings": [
        (r"tb|tmb|tmbn", "tambien"), (r"toy", "estoy"), (r"ta", "esta"), (r"bn", "bien"), (r"dl", "del"), (r"kiero", "quiero"),
        (r"mxo|muxo", "mucho"), (r"mxa|muxa", "mucha"), (r"sta", "esta"),
        (r"bomit(\w*)", r"vomit\1"), (r"mariad([oa]s?)", r"maread\1"), (r"desmall(\w*)", r"desmay\1"),
        (r"convulc(\w*)", r"convuls\1"), (r"amari?y(\w*)", r"amarill\1"), (r"dia(r|rr|hr)e+ah?", "diarrea"),
        (r"respir+ar", "respirar"), (r"d", "de"), (r"q|k", "que"), (r"xq|pq", "porque")],
    # conocido y sin cambios: anula en su cláusula un síntoma que no es ``lasting``
    "stable": [r"(lo|como) de siempre", r"como siempre", r"igual que (siempre|antes|la ultima vez|la vez pasada|el otro dia)",
               r"(nada|no es) nuevo", r"sin cambios", r"no ha cambiado", r"estable", r"controlad\w*",
               r"(la |las |el |los )?(medicina|medicamento|pastilla|crema)s? (me )?(ayuda|funciona|sirve)\w*",
               r"ya lo (sabe|vio|reviso) (el|la) (doctor|doctora|medic[oa])", r"(el|la) (doctor|doctora|medic[oa]) ya (lo )?(sabe|vio|reviso)",
               r"normal para mi", r"desde hace (muchos |varios |unos )?(anos|tiempo|mucho tiempo)", r"ya (esta|estoy) bien", r"va (bien|mejor)", r"(esta|va) (sanando|curando)",
               r"(la|el) (doctor|doctora|medic[oa]|enfermer[oa]) (dijo|dice|ya)"],
    # la precaución: una palabra de síntoma en un mensaje que no habla de citas va al equipo (salvo si es leve)
    "report": [_SINTOMA, r"(me |le )?pica(n)?", r"picor", r"enferm[oa]s?", r"enfermedad", r"malestar", r"me siento mal", r"reaccion", r"palpitacion\w*", r"tembl\w*", r"estrenid\w*",
               r"acidez", r"molest\w*"],
    "mild": [r"(3[5-7]|9[5-9])([.,]\d+)?", r"100([.,][0-3]\d*)?", r"leve\w*", r"un poco", r"un poquito", r"poquito", r"liger[oa]", r"ligeramente", r"no (es|esta) (tan|muy) (mal|fuerte)",
             r"algo de"],
    "scheduling": [r"cambiar", r"mover", r"(otro|otra) (dia|hora|fecha)", r"el dia", r"citas?", r"consultas?", r"visitas?", r"reserv\w*", r"cancel\w*", r"anul\w*", r"horarios?", r"a que hora",
                   r"que hora", r"turno", r"agenda\w*", r"lunes", r"martes", r"miercoles", r"jueves", r"viernes", r"sabado", r"domingo",
                   r"la semana que viene", r"proxima semana", r"estacion\w*", r"aparca\w*", r"direccion", r"llevar", r"traer",
                   r"seguro medico", r"factura", r"receta", r"resultados", r"formulario", r"opcion", r"(la|el) (primer[oa]?|segund[oa]|"
                   r"tercer[oa]?|ultim[oa])", r"disponib\w*", r"infusion", r"seguimiento"],
    "vocabulary": """respirar respiro respirando aliento pecho dolor dolores duele sangre sangrado sangrando heces vomito vomitos
        vomitando vomitar diarrea fiebre calentura escalofrios temperatura desmayo desmaye desmayado desmayada mareo mareos
        mareado mareada convulsion convulsiones confundido confundida desorientado desorientada olvido olvidando memoria
        cabeza vision borrosa borroso hinchado hinchada hinchazon ampollas pelando amarillo amarilla amarillos orina orinar
        entumido entumida debilidad palpitaciones corazon estomago barriga colicos terrible horrible insoportable fuerte
        empeorando ahogo ahogando tosiendo cansancio agotado agotada sentido hablando muchisimo""".split(),
    "common": """dolar dolares color calor valor fuerte suerte muerte puerta cabeza cerveza pecho techo hecho derecho fiebre
        liebre sangre madre padre hambre nombre hombre costumbre mareo correo mareas tareas orina oficina cocina
        corazon razon vision version misión mision cansado casado pasado ahogado abogado memoria historia mismo
        borrosa hermosa olvido oido olvidado hablando mandando ando sentido vestido partido pedido perdido mario maria
        marisa conclusion""".split(),
    "lasting": ["chest", "breathing", "bleeding", "syncope", "seizure", "stroke_weakness", "suicidal", "confusion"],
    "not_symptoms": [r"(cansad[oa]s?|hart[oa]s?|agotad[oa]s?) de (esperar|llamar|que|tanto|los|las|la|el)",
        r"confundid\w* (con|sobre|acerca de|respecto a|por) (los|las|el|la|mi|su|sus|esto|eso|tant\w*)",
        r"(olvide|se me olvido|olvido) (donde|como|cuando|a que hora) ([\w']+ ){0,3}(clinica|consultorio|cita|estacion\w*|edificio|hospital|llegar|ir)",
        r"(analisis|examen|examenes|prueba|pruebas|estudios?|muestras?|extraccion|toma|laboratorio|conteo|grupo) de sangre",
        r"sacar(me|le|nos|te)? (la )?sangre", r"en la sangre", r"donar sangre", r"azucar",
        r"presion (arterial )?([\w']+ )?(normal|bien|de \d+|\d+)", r"pastilla de la presion", r"me muero (por|de) \w+",
        r"quita(r|n)? el aliento", r"me da(n)? dolor de cabeza", r"(se me|me) cayo el alma", r"harta?",
        r"me siento (muy |tan )?mal (por|de que|con|de)", r"no veo la hora", r"(mi|la) vista (al|del|de la) \w+",
        r"citas? de (los )?ojos", r"(cuales|que) (son|serian) (los |las |unos )?([\w']+ ){0,1}efectos (secundarios|adversos)", r"casi me (da|dio) un infarto (cuando|con|al)"],
    "clause_break": [r"pero", r"aunque", r"sin embargo", r"y", r"e", r"but", r"though", r"and", r"ademas", r"tambien"],
    "negation": [r"no\s*$", r"no (me|le|te|nos|les|se)\s*$", r"no (me |le |se )?(he|ha|hemos|han)( tenido| sentido| notado)?", r"no (tengo|tiene|hay|he tenido|ha tenido|siento|presento|noto|note)( nada de)?( ningun\w*)?",
                 r"sin", r"ni", r"nada de", r"tampoco", r"niega", r"ningun\w*", r"nunca", r"without"],
    "hypothetical": [r"si (me |le |te )?(sube|suben|pone|ponen|empeora|empeoran|duele|aumenta)",r"^\s*(que|cuales|cual)( tipo de| clase de)?\s*$", r"vigilar\s*$",r"si (me |le |te )?(da|dan|sale|salen|tengo|tiene|pasa|llega|empiez\w*|aparec\w*|vuelve)",
                     r"que pasa si", r"mas adelante", r"que (hago|hacemos|debo hacer|tengo que hacer|hay que hacer) (si|cuando|en caso)",
                     r"si (me |le |te )?(falta|faltara|cuesta|costara|sangra|arde|pica|hincha)", r"en el futuro", r"en caso de", r"por si", r"cuantas veces", r"cuanto"],
    # una pregunta que puede ser sobre su propio síntoma: solo anula un concepto que no es duradero
    "asking": [r"es normal (que|tener|sentir)", r"(esto|eso) es normal", r"es comun (que|tener|sentir)"],
    # un síntoma preguntado y negado ("¿fiebre? no.", "¿tos? tampoco.")
    "denial": [r"no", r"nada", r"tampoco", r"ninguno", r"ninguna", r"negativo", r"para nada", r"nope", r"nah"],
    "past": [r"cuando (era|fui) (nino|nina|joven|chic[oa])", r"(?<!desde )hace ((\d+|un|una|dos|tres|varios|varias|muchos|muchas|unos|unas) )?(anos?|meses|mes)",
             r"(del|el) (mes|ano) pasado", r"(?<!\d )de (enero|febrero|marzo|abril|mayo|junio|julio|agosto|septiembre|octubre|"
                                              r"noviembre|diciembre)", r"de (nino|nina|joven)"],
    "resolved": [r"(mucho|bastante) mejor", r"(?<!no )mejorando",r"(se (me |le )?)(quito|fue|paso|curo|ha quitado|ha ido)", r"ya (paso|no tengo|no tiene|se fue)",
                 r"(desaparecio|mejoro|mejore)", r"ya estoy (mejor|bien)", r"esta (mejor|bien) ya"],
}
