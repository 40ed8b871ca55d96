//! The demo's two languages. One table serves the server-rendered pages and,
//! as JSON embedded in each page, the script that switches language live.

use std::sync::LazyLock;

/// A language of the demo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Lang {
    /// English.
    #[default]
    En,
    /// French.
    Fr,
}

impl Lang {
    /// From the stored code; anything unknown is English.
    pub fn from_code(code: &str) -> Self {
        if code == "fr" { Self::Fr } else { Self::En }
    }

    /// The BCP 47 code.
    pub fn code(self) -> &'static str {
        match self {
            Self::En => "en",
            Self::Fr => "fr",
        }
    }
}

/// `(key, English, French)`.
const TABLE: &[(&str, &str, &str)] = &[
    (
        "site.name",
        "Sessionary Tea Shop",
        "Boutique de thé Sessionary",
    ),
    ("nav.shop", "Shop", "Boutique"),
    ("nav.signin", "Sign in", "Se connecter"),
    ("nav.sessions", "Manage sessions", "Gérer les sessions"),
    ("nav.admin", "Admin", "Administration"),
    ("nav.signout", "Sign out", "Se déconnecter"),
    ("nav.signed_in_as", "Signed in as", "Connecté en tant que"),
    ("theme.label", "Theme", "Thème"),
    ("theme.light", "Light", "Clair"),
    ("theme.dark", "Dark", "Sombre"),
    ("lang.label", "Language", "Langue"),
    ("shop.title", "Products", "Produits"),
    ("shop.add", "Add to cart", "Ajouter au panier"),
    ("product.tea", "Green tea", "Thé vert"),
    ("product.coffee", "Coffee beans", "Grains de café"),
    ("product.mug", "Mug", "Tasse"),
    ("personal.recent", "Recently viewed", "Vus récemment"),
    (
        "personal.recommended",
        "Recommended for you",
        "Recommandé pour vous",
    ),
    ("cart.title", "Your cart", "Votre panier"),
    (
        "cart.empty",
        "Your cart is empty.",
        "Votre panier est vide.",
    ),
    ("cart.items", "items", "articles"),
    ("cart.clear", "Empty the cart", "Vider le panier"),
    (
        "cart.kept",
        "Your cart stays with you when you sign in.",
        "Votre panier vous suit quand vous vous connectez.",
    ),
    ("login.title", "Sign in", "Connexion"),
    ("login.username", "User name", "Nom d'utilisateur"),
    ("login.password", "Password", "Mot de passe"),
    (
        "login.remember",
        "Remember me on this device",
        "Se souvenir de moi sur cet appareil",
    ),
    ("login.submit", "Sign in", "Se connecter"),
    (
        "login.error",
        "Unknown user or wrong password.",
        "Utilisateur inconnu ou mot de passe incorrect.",
    ),
    (
        "login.demo",
        "The demo accounts (alice and admin) were printed by sessionary serve when it first started.",
        "Les comptes de démonstration (alice et admin) ont été affichés par sessionary serve à son premier démarrage.",
    ),
    (
        "expiry.one",
        "Your session will expire in 1 minute",
        "Votre session expirera dans 1 minute",
    ),
    (
        "expiry.many",
        "Your session will expire in {n} minutes",
        "Votre session expirera dans {n} minutes",
    ),
    ("expiry.stay", "Stay signed in", "Rester connecté"),
    (
        "expired.title",
        "Your session has ended",
        "Votre session est terminée",
    ),
    (
        "expired.reconnect",
        "Sign in again to continue where you left off.",
        "Reconnectez-vous pour reprendre là où vous en étiez.",
    ),
    ("expired.submit", "Sign in again", "Se reconnecter"),
    (
        "reason.expired_idle",
        "You were inactive for a while, so we signed you out to protect your account. Sign in again soon and your cart comes back.",
        "Vous étiez inactif depuis un moment : nous vous avons déconnecté pour protéger votre compte. Reconnectez-vous bientôt et votre panier reviendra.",
    ),
    (
        "reason.expired_absolute",
        "Sessions last a limited time and this one reached its limit. Sign in again soon and your cart comes back.",
        "Les sessions ont une durée limitée et celle-ci l'a atteinte. Reconnectez-vous bientôt et votre panier reviendra.",
    ),
    (
        "reason.revoked_by_user",
        "This session was ended from another of your devices.",
        "Cette session a été terminée depuis un autre de vos appareils.",
    ),
    (
        "reason.revoked_by_admin",
        "An administrator ended this session.",
        "Un administrateur a terminé cette session.",
    ),
    (
        "reason.logged_out",
        "You signed out.",
        "Vous vous êtes déconnecté.",
    ),
    (
        "reason.evicted_by_limit",
        "You signed in on more devices than allowed, so this, the oldest session, was ended.",
        "Vous vous êtes connecté sur trop d'appareils : cette session, la plus ancienne, a été terminée.",
    ),
    (
        "reason.other",
        "Your session ended.",
        "Votre session est terminée.",
    ),
    ("sessions.title", "Manage sessions", "Gérer les sessions"),
    (
        "sessions.intro",
        "These devices are signed in to your account. End any you do not recognise.",
        "Ces appareils sont connectés à votre compte. Terminez ceux que vous ne reconnaissez pas.",
    ),
    ("sessions.device", "Device", "Appareil"),
    ("sessions.ip", "IP address", "Adresse IP"),
    ("sessions.started", "Signed in", "Connexion"),
    ("sessions.last_seen", "Last seen", "Dernière activité"),
    ("sessions.remembered", "Remembered", "Mémorisé"),
    ("sessions.this", "This device", "Cet appareil"),
    (
        "sessions.app",
        "App signed in from here:",
        "Application connectée d’ici :",
    ),
    ("sessions.end", "End", "Terminer"),
    (
        "sessions.end_others",
        "Sign out all other devices",
        "Déconnecter les autres appareils",
    ),
    (
        "sessions.end_all",
        "Sign out everywhere",
        "Se déconnecter partout",
    ),
    ("sessions.yes", "yes", "oui"),
    ("sessions.no", "no", "non"),
    ("nav.security", "Security", "Sécurité"),
    (
        "security.title",
        "Two-step verification",
        "Validation en deux étapes",
    ),
    (
        "security.off",
        "Two-step verification is off. Turn it on to protect your account with a code from an authenticator app.",
        "La validation en deux étapes est désactivée. Activez-la pour protéger votre compte avec le code d'une application d'authentification.",
    ),
    (
        "security.on",
        "Two-step verification is on.",
        "La validation en deux étapes est activée.",
    ),
    (
        "security.enrol",
        "Turn on two-step verification",
        "Activer la validation en deux étapes",
    ),
    (
        "security.scan",
        "Scan this code with your authenticator app, or type the key, then enter the six-digit code it shows.",
        "Scannez ce code avec votre application d'authentification, ou saisissez la clé, puis entrez le code à six chiffres affiché.",
    ),
    (
        "security.recovery",
        "Recovery codes: each works once if you lose your phone. Keep them somewhere safe; they are shown only now.",
        "Codes de secours : chacun sert une fois si vous perdez votre téléphone. Gardez-les en lieu sûr ; ils ne sont affichés que maintenant.",
    ),
    ("security.code", "Code", "Code"),
    ("security.password", "Password", "Mot de passe"),
    (
        "security.new_password",
        "New password",
        "Nouveau mot de passe",
    ),
    ("security.repeat_password", "Repeat it", "Répétez-le"),
    (
        "security.end_others",
        "Also sign out my other sessions",
        "Déconnecter aussi mes autres sessions",
    ),
    (
        "security.change_password",
        "Change password",
        "Changer le mot de passe",
    ),
    (
        "security.password_changed",
        "Your password was changed.",
        "Votre mot de passe a été changé.",
    ),
    (
        "security.mfa_changed",
        "Your two-step verification was changed.",
        "Votre validation en deux étapes a été modifiée.",
    ),
    (
        "security.ended_others",
        "Other sessions signed out:",
        "Autres sessions déconnectées :",
    ),
    (
        "security.offer_end_others",
        "If someone else might be using your account, sign out your other sessions now.",
        "Si quelqu'un d'autre utilise peut-être votre compte, déconnectez vos autres sessions maintenant.",
    ),
    (
        "security.password_mismatch",
        "The two passwords differ.",
        "Les deux mots de passe diffèrent.",
    ),
    (
        "security.password_length",
        "Use 8 to 256 characters.",
        "Utilisez de 8 à 256 caractères.",
    ),
    (
        "security.disable",
        "Turn off two-step verification",
        "Désactiver la validation en deux étapes",
    ),
    ("security.confirm", "Confirm", "Confirmer"),
    (
        "security.aal",
        "This session's assurance level",
        "Niveau d'assurance de cette session",
    ),
    (
        "security.codes_left",
        "Recovery codes left",
        "Codes de secours restants",
    ),
    (
        "stepup.title",
        "Confirm it's you",
        "Confirmez votre identité",
    ),
    (
        "stepup.intro",
        "This area needs a code from your authenticator app (or a recovery code).",
        "Cette zone demande un code de votre application d'authentification (ou un code de secours).",
    ),
    ("stepup.submit", "Continue", "Continuer"),
    (
        "stepup.held",
        "This session was just used from another network or browser. To keep it, confirm it's you.",
        "Cette session vient d'être utilisée depuis un autre réseau ou navigateur. Pour la garder, confirmez votre identité.",
    ),
    (
        "stepup.refused",
        "That code was not accepted. Wait for the next one and try again.",
        "Ce code n'a pas été accepté. Attendez le suivant et réessayez.",
    ),
    (
        "reauth.title",
        "Enter your password again",
        "Saisissez à nouveau votre mot de passe",
    ),
    (
        "reauth.intro",
        "For your security, this change needs a recent sign-in.",
        "Pour votre sécurité, cette modification demande une connexion récente.",
    ),
    ("reauth.submit", "Continue", "Continuer"),
    ("admin.title", "Admin", "Administration"),
    (
        "admin.policy",
        "Administrator sessions are stricter: they end after {idle} without activity and after {absolute} in any case, and cannot be remembered.",
        "Les sessions d'administrateur sont plus strictes : elles se terminent après {idle} sans activité et après {absolute} dans tous les cas, et ne peuvent pas être mémorisées.",
    ),
    ("admin.sessions", "Live sessions", "Sessions actives"),
    ("admin.user", "User", "Utilisateur"),
    ("admin.revoke", "Revoke", "Révoquer"),
    ("admin.role", "Role", "Rôle"),
    (
        "admin.min_age",
        "Older than (min)",
        "Plus ancienne que (min)",
    ),
    ("admin.filter", "Filter", "Filtrer"),
    (
        "admin.chart",
        "Signed-in sessions, last 24 hours",
        "Sessions connectées, dernières 24 heures",
    ),
    (
        "admin.end_user",
        "End a user's sessions",
        "Terminer les sessions d'un utilisateur",
    ),
    (
        "admin.end_all_of",
        "End all sessions of",
        "Terminer toutes les sessions de",
    ),
    (
        "admin.policy_title",
        "Policy in force",
        "Politique en vigueur",
    ),
    ("admin.trail", "Audit trail of", "Journal d'audit de"),
    ("admin.back", "Back to the console", "Retour à la console"),
    (
        "error.title",
        "Something went wrong",
        "Un problème est survenu",
    ),
    (
        "error.not_found",
        "This page does not exist.",
        "Cette page n'existe pas.",
    ),
    (
        "error.csrf",
        "This form has expired or did not come from this site, so nothing was done. Reload the page and try again.",
        "Ce formulaire a expiré ou ne provient pas de ce site : rien n'a été fait. Rechargez la page et réessayez.",
    ),
    (
        "error.forbidden",
        "Your account does not have access to this page.",
        "Votre compte n'a pas accès à cette page.",
    ),
    (
        "error.limit",
        "You are signed in on too many devices. Sign out somewhere else first.",
        "Vous êtes connecté sur trop d'appareils. Déconnectez-vous ailleurs d'abord.",
    ),
    (
        "error.unavailable",
        "The service is briefly unavailable. Please try again in a moment.",
        "Le service est momentanément indisponible. Réessayez dans un instant.",
    ),
    (
        "error.bad_request",
        "The request was not understood.",
        "La requête n'a pas été comprise.",
    ),
    (
        "error.internal",
        "Something went wrong on our side. Please try again.",
        "Une erreur s'est produite de notre côté. Réessayez.",
    ),
    ("error.back", "Back to the shop", "Retour à la boutique"),
    ("nav.outbox", "Outbox", "Boîte d'envoi"),
    ("nav.downloads", "Downloads", "Téléchargements"),
    ("downloads.title", "Downloads", "Téléchargements"),
    (
        "downloads.intro",
        "Our leaflets, free to download, a few per session.",
        "Nos fiches, à télécharger gratuitement, quelques-unes par session.",
    ),
    (
        "downloads.left",
        "downloads left in this session",
        "téléchargements restants dans cette session",
    ),
    (
        "downloads.unlimited",
        "No download limit for your account.",
        "Pas de limite de téléchargement pour votre compte.",
    ),
    (
        "downloads.back",
        "Back to the downloads",
        "Retour aux téléchargements",
    ),
    (
        "downloads.file.green_tea",
        "Brewing green tea",
        "Infuser le thé vert",
    ),
    (
        "downloads.file.black_tea",
        "Brewing black tea",
        "Infuser le thé noir",
    ),
    ("downloads.file.coffee", "Making coffee", "Préparer le café"),
    (
        "downloads.file.mug_care",
        "Caring for your mug",
        "Entretenir votre tasse",
    ),
    ("downloads.file.prices", "Price list", "Liste des prix"),
    (
        "downloads.file.hours",
        "Opening hours",
        "Heures d'ouverture",
    ),
    (
        "error.quota_downloads",
        "You have used all the downloads of this session.",
        "Vous avez utilisé tous les téléchargements de cette session.",
    ),
    (
        "error.quota",
        "A usage limit is reached",
        "Une limite d'utilisation est atteinte",
    ),
    ("error.quota_limit", "Limit:", "Limite :"),
    ("error.quota_title", "Limit reached", "Limite atteinte"),
    ("error.quota_per_session", "per session", "par session"),
    (
        "error.quota_resets_session",
        "It starts again with a new session (sign out, or when this one ends).",
        "Elle recommence avec une nouvelle session (déconnexion, ou à la fin de celle-ci).",
    ),
    (
        "error.quota_resets_at",
        "It starts again at",
        "Elle recommence à",
    ),
    ("outbox.title", "Outbox", "Boîte d'envoi"),
    (
        "outbox.intro",
        "The demo's mailbox: every alert the service sent, newest first.",
        "La boîte aux lettres de la démo : toutes les alertes envoyées, les plus récentes d'abord.",
    ),
    (
        "outbox.empty",
        "No alerts yet. Sign in from another browser to get one.",
        "Aucune alerte pour l'instant. Connectez-vous depuis un autre navigateur pour en recevoir une.",
    ),
    (
        "outbox.off",
        "Alerts do not go to the outbox here (e-mail, webhook, or none).",
        "Ici, les alertes ne vont pas dans la boîte d'envoi (e-mail, webhook, ou aucune).",
    ),
    ("outbox.time", "Time", "Heure"),
    ("outbox.user", "User", "Utilisateur"),
    ("outbox.subject", "Subject", "Objet"),
    ("outbox.message", "Message", "Message"),
    // "Security activity" (activity.rs).
    ("nav.activity", "Your activity", "Votre activité"),
    ("activity.title", "Your activity", "Votre activité"),
    (
        "activity.security_title",
        "Security activity",
        "Activité de sécurité",
    ),
    ("activity.session_title", "This session", "Cette session"),
    (
        "activity.length",
        "Session length:",
        "Durée de la session :",
    ),
    ("activity.views", "pages viewed:", "pages vues :"),
    (
        "activity.no_views",
        "No page viewed yet in this session.",
        "Aucune page vue dans cette session pour l'instant.",
    ),
    (
        "activity.time_per_page",
        "Time per page (views)",
        "Temps par page (vues)",
    ),
    ("activity.errors", "Errors", "Erreurs"),
    (
        "activity.intro",
        "Sign-ins, sign-outs and other security events of your account, newest first. Times are UTC.",
        "Connexions, déconnexions et autres événements de sécurité de votre compte, les plus récents d'abord. Heures en UTC.",
    ),
    (
        "activity.empty",
        "Nothing recorded yet.",
        "Rien d'enregistré pour l'instant.",
    ),
    ("activity.time", "Time (UTC)", "Heure (UTC)"),
    ("activity.what", "What", "Quoi"),
    ("activity.ip", "Device IP", "IP de l'appareil"),
    ("activity.session", "Session", "Session"),
    ("activity.this", "this session", "cette session"),
    ("activity.kind.created", "Signed in", "Connexion"),
    (
        "activity.kind.regenerated",
        "New session key",
        "Nouvelle clé de session",
    ),
    (
        "activity.kind.stepped_up",
        "Verified with a second factor",
        "Vérifié avec un second facteur",
    ),
    (
        "activity.kind.binding_mismatch",
        "Used from another network or browser",
        "Utilisée depuis un autre réseau ou navigateur",
    ),
    ("activity.kind.ended", "Session ended", "Session terminée"),
    (
        "activity.kind.refresh_issued",
        "App access granted",
        "Accès accordé à une application",
    ),
    (
        "activity.kind.refresh_reused",
        "Stolen app token detected: access revoked",
        "Jeton d'application volé détecté : accès révoqué",
    ),
    (
        "activity.kind.refresh_revoked",
        "App access revoked",
        "Accès d'application révoqué",
    ),
    (
        "activity.kind.limit_rejected",
        "Sign-in refused: too many devices",
        "Connexion refusée : trop d'appareils",
    ),
    (
        "activity.kind.other",
        "Security event",
        "Événement de sécurité",
    ),
];

/// The text of `key` in `lang` (the key itself if unknown, which tests catch).
pub(super) fn t(lang: Lang, key: &str) -> &'static str {
    TABLE
        .iter()
        .find(|(k, _, _)| *k == key)
        .map_or("?", |(_, en, fr)| match lang {
            Lang::En => en,
            Lang::Fr => fr,
        })
}

/// `{"en": {...}, "fr": {...}}`, embedded in pages for the language switch.
pub(super) fn table_json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        let mut en = serde_json::Map::new();
        let mut fr = serde_json::Map::new();
        for (k, e, f) in TABLE {
            en.insert((*k).into(), (*e).into());
            fr.insert((*k).into(), (*f).into());
        }
        serde_json::json!({ "en": en, "fr": fr }).to_string()
    });
    &JSON
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_unique_and_both_languages_filled() {
        let mut keys: Vec<&str> = TABLE.iter().map(|(k, _, _)| *k).collect();
        keys.sort_unstable();
        let n = keys.len();
        keys.dedup();
        assert_eq!(keys.len(), n, "duplicate keys");
        assert!(TABLE.iter().all(|(_, e, f)| !e.is_empty() && !f.is_empty()));
        assert_eq!(t(Lang::Fr, "nav.shop"), "Boutique");
        assert_eq!(t(Lang::En, "no.such.key"), "?");
    }
}
