// Telegram's Bot API, emulated by the npm package telegram-test-api (an independent
// implementation): claw talks to it as to api.telegram.org (TELEGRAM_API_URL), and the tests play
// users through its client side (POST /sendMessage, /sendCallback, /getUpdates,
// /getUpdatesHistory). Usage: node scripts/telegram-emulator.cjs PORT (NODE_PATH: its modules).
'use strict';
const TelegramServer = require('telegram-test-api');

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port <= 0) {
  console.error('usage: telegram-emulator.cjs PORT');
  process.exit(2);
}
const server = new TelegramServer({ port, host: '127.0.0.1', storeTimeout: 600 });
server.start().then(
  () => console.log(`listening ${port}`),
  (e) => {
    console.error(`cannot start: ${e}`);
    process.exit(1);
  },
);
process.on('SIGTERM', () => server.stop().then(() => process.exit(0)));
