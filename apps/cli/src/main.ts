import { runCli } from './haven.cli';

void runCli(process.argv).then((code) => process.exit(code));
