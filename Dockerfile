# One image for every Haven service; HAVEN_ROLE picks the process (haven = all-in-one).
# Build context: the repository root (.dockerignore keeps node_modules, dist and tmp out).
#
# Build stage: zstd-napi (the chunk codec's reused zstd contexts) ships no binary in its npm
# package and compiles with node-gyp when its prebuilt download is not reachable: python3, make and
# g++ are needed here, not in the image that runs.
FROM node:20-bookworm-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 make g++ ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/haven
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY . .
# Compiled ahead of time: no TypeScript compiler in each process's memory.
RUN npm run build

FROM node:20-bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends qemu-utils ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/haven
COPY --from=build /opt/haven /opt/haven
ENV HAVEN_ROLE=haven HAVEN_DATA=/var/lib/haven HAVEN_PORT=3000
# Read by glibc at exec, so set here (DATA_PATH_EXEC_ENVIRONMENT, libs/services/core): libuv's
# threads each grew a malloc arena, 12-28 MiB of a transfer worker's RSS (docs/benchmarks/jobs.md).
ENV MALLOC_ARENA_MAX=2
VOLUME /var/lib/haven
EXPOSE 3000
STOPSIGNAL SIGTERM
# A young generation of 1 MiB semi-spaces (DATA_PATH_NODE_FLAGS): ~17-32 MiB less RSS, same speed.
CMD ["sh", "-c", "exec node --max-semi-space-size=1 dist/apps/${HAVEN_ROLE}/src/main.js"]
