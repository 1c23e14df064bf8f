/* Callgate's PJSIP limits: a gateway carries thousands of calls, not the
 * 32 that the stock build (and the PyPI wheels) allow. DESIGN.md has the
 * measurements behind these figures. */
#define PJSUA_MAX_CALLS              4096
#define PJSUA_MAX_ACC                64
#define PJ_IOQUEUE_MAX_HANDLES       8192
#define PJSUA_MAX_CONF_PORTS         (3 * PJSUA_MAX_CALLS)
#define PJSUA_MAX_PLAYERS            4096
#define PJSUA_MAX_RECORDERS          4096
#define PJSIP_MAX_TSX_COUNT          65535
#define PJSIP_MAX_DIALOG_COUNT       65535
#define PJ_DEBUG                     0
#define PJ_LOG_MAX_LEVEL             5
#define PJMEDIA_HAS_VIDEO            0
#define PJMEDIA_CONF_USE_SWITCH_BOARD 0
/* Media without a sound device: the engine only bridges network legs. */
#define PJMEDIA_AUDIO_DEV_HAS_NULL_AUDIO 1
#define PJMEDIA_AUDIO_DEV_HAS_ALSA   0
#define PJMEDIA_AUDIO_DEV_HAS_PORTAUDIO 0
