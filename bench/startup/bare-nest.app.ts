// The start-up baseline: a NestJS HTTP app with one route, started through the same runner.
import 'reflect-metadata';
import { Controller, Get, Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';

@Controller()
class HealthController {
  @Get('health')
  ok() {
    return { ok: true };
  }
}

@Module({ controllers: [HealthController] })
class BareModule {}

void NestFactory.create(BareModule, { logger: false }).then((app) =>
  app.listen(Number(process.env['PORT']), '127.0.0.1'),
);
