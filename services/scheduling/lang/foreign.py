"""Common words of languages no tenant has declared yet (French, Portuguese, Italian, German):
a message that reads as one of them goes to staff instead of being parsed."""
from __future__ import annotations

MARKERS: dict[str, frozenset[str]] = {
    "fr": frozenset("oui non merci je vous nous est suis avec pour rendez rendez-vous voudrais pouvez bonjour "
                    "demain semaine matin apres-midi d'accord peut-etre douleur poitrine aujourd'hui".split()),
    "pt": frozenset("sim nao obrigado obrigada voce consulta amanha semana manha quero posso marcar desmarcar "
                    "tenho dor peito estou agora entao muito eu minha meu verdade pode horario desculpa ajuda ela "
                    "esta aqui ingles primeiro".split()),
    "it": frozenset("grazie buongiorno appuntamento domani settimana mattina pomeriggio vorrei posso sono "
                    "ho dolore petto va bene allora".split()),
    "de": frozenset("ja nein danke bitte ich sie wir termin morgen woche nachmittag moechte kann habe "
                    "schmerzen brust und nicht ist der die das erste passt mir gut".split()),
    "vi": frozenset("toi muon huy lich hen co khong cam on ban duoc di đi hom nay ngay mai".split()),
}
