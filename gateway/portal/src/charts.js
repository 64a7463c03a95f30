// ECharts from its modular core: only the charts and components the portal draws (keeps the first page
// small). The aria component gives every chart a text description for screen readers.
import * as echarts from 'echarts/core'
import { BarChart, LineChart, PieChart, ScatterChart, EffectScatterChart, MapChart } from 'echarts/charts'
import {
  AriaComponent, DatasetComponent, GeoComponent, GridComponent, LegendComponent, TitleComponent, TooltipComponent, VisualMapComponent,
} from 'echarts/components'
import { CanvasRenderer } from 'echarts/renderers'

echarts.use([
  BarChart, LineChart, PieChart, ScatterChart, EffectScatterChart, MapChart,
  AriaComponent, DatasetComponent, GeoComponent, GridComponent, LegendComponent, TitleComponent, TooltipComponent, VisualMapComponent,
  CanvasRenderer,
])

export { echarts }

// Colours for issue classes and statuses, distinguishable and with enough contrast on white.
export const PALETTE = ['#c62828', '#1565c0', '#2e7d32', '#ef6c00', '#6a1b9a', '#00838f', '#ad1457', '#4e342e', '#37474f', '#9e9d24', '#5d4037', '#283593']
