// zh-CN first, English beside it. The choice lives in memory for this page (and the <html lang> follows).
import { createI18n } from 'vue-i18n'
import zhCN from './locales/zh-CN.js'
import en from './locales/en.js'

export const LOCALES = ['zh-CN', 'en']

export const i18n = createI18n({
  legacy: false,
  locale: 'zh-CN',
  fallbackLocale: 'zh-CN',
  messages: { 'zh-CN': zhCN, en },
})

export function setLocale(locale) {
  i18n.global.locale.value = locale
  document.documentElement.lang = locale
}
